# ruff: noqa: E501  # HTML and table rows read best on one line
"""Merge several JSON verdict reports into an implementation-by-implementation interop matrix."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

SYMBOL = {"pass": "pass", "fail": "FAIL", "inconclusive": "inconc.", "n/a": "n/a", "error": "ERROR"}


def load(paths: list[Path]) -> list[dict[str, Any]]:
    reports = []
    for path in paths:
        doc = json.loads(path.read_text())
        if "results" not in doc or "implementation" not in doc:
            raise ValueError(f"{path} is not an R197 verdict report (report.json)")
        reports.append(doc)
    return reports


def build(reports: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    names = [r["implementation"] for r in reports]
    cases: dict[str, dict[str, Any]] = {}
    for report in reports:
        under_test = set(report.get("roles", {}))
        for result in report["results"]:
            if under_test and not under_test & set(result.get("roles", [])):
                continue  # the case only exercised reference parts in this run
            row = cases.setdefault(result["id"], {"id": result["id"], "objective": result["objective"],
                                                  "theme": result["theme"], "verdicts": {}})  # fmt: skip
            row["verdicts"][report["implementation"]] = (
                result["verdict"],
                result.get("detail", ""),
            )
    return names, [cases[k] for k in sorted(cases)]


def markdown(reports: list[dict[str, Any]]) -> str:
    names, rows = build(reports)
    lines = ["| case | objective | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for row in rows:
        cells = [SYMBOL.get(row["verdicts"].get(n, ("-", ""))[0], "-") for n in names]
        lines.append(f"| {row['id']} | {row['objective']} | " + " | ".join(cells) + " |")
    totals = []
    for n in names:
        verdicts = [row["verdicts"][n][0] for row in rows if n in row["verdicts"]]
        totals.append(", ".join(f"{v} {verdicts.count(v)}" for v in SYMBOL if verdicts.count(v)))
    lines.append("| **totals** | | " + " | ".join(totals) + " |")
    return "\n".join(lines) + "\n"


def to_html(reports: list[dict[str, Any]]) -> str:
    names, rows = build(reports)
    e = html.escape
    colour = {
        "pass": "#d7f5dd",
        "fail": "#f9d2cf",
        "error": "#ead6f5",
        "inconclusive": "#fcefc7",
        "n/a": "#eee",
    }
    out = ["<!doctype html><html><head><meta charset='utf-8'><title>R197 interop matrix</title>",
           "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;padding:3px 6px}"
           "table{border-collapse:collapse}</style></head><body><h1>R197 interop matrix</h1><table>",
           "<tr><th>case</th><th>objective</th>" + "".join(f"<th>{e(n)}</th>" for n in names) + "</tr>"]  # fmt: skip
    for row in rows:
        cells = []
        for n in names:
            verdict, detail = row["verdicts"].get(n, ("-", ""))
            cells.append(
                f"<td style='background:{colour.get(verdict, '#fff')}' title='{e(detail)}'>{e(verdict)}</td>"
            )
        out.append(
            f"<tr><td>{e(row['id'])}</td><td>{e(row['objective'])}</td>{''.join(cells)}</tr>"
        )
    out.append("</table></body></html>")
    return "\n".join(out)


def register(sub: Any, epilog: str) -> None:
    import argparse  # noqa: PLC0415

    parser = sub.add_parser(
        "matrix",
        help="merge conformance reports into an interop matrix (HTML and Markdown)",
        description="Merge the report.json files of several conformance runs (one per "
        "implementation) into an implementation-by-implementation interop matrix.",
        epilog=epilog + "\nExample: testbed matrix reports/*/report.json --out docs/interop-matrix",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("reports", nargs="+", type=Path, help="report.json files")
    parser.add_argument(
        "--out", type=Path, default=Path("interop-matrix"), help="output path without suffix"
    )
    parser.set_defaults(func=run_matrix)


def run_matrix(args: Any, settings: Any) -> int:
    import sys  # noqa: PLC0415

    try:
        reports = load(args.reports)
    except (OSError, ValueError) as exc:
        print(f"testbed matrix: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(markdown(reports))
    args.out.with_suffix(".html").write_text(to_html(reports))
    print(
        f"matrix of {len(reports)} implementations: {args.out}.md, {args.out}.html", file=sys.stderr
    )
    return 0
