# ruff: noqa: E501  # HTML rows read best on one line
"""Verdict reports: JSON (machine-readable, merged by `testbed matrix`) and self-contained HTML."""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conformance.model import THEMES, Result

VERDICTS = ("pass", "fail", "inconclusive", "n/a", "error")
_COLOURS = {
    "pass": "#1b7f3b",
    "fail": "#b3261e",
    "inconclusive": "#8a6d00",
    "n/a": "#666",
    "error": "#6a1b9a",
}


def to_json(results: list[Result], implementation: str, roles: dict[str, str]) -> dict[str, Any]:
    return {
        "implementation": implementation,
        "roles": roles,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": dict(Counter(r.verdict for r in results)),
        "results": [
            {
                "id": r.case.id,
                "objective": r.case.objective,
                "clauses": list(r.case.clauses),
                "theme": r.case.theme,
                "pics": list(r.case.pics),
                "verdict": r.verdict,
                "detail": r.detail,
                "duration": round(r.duration, 3),
                "figures": r.figures,
                "roles": list(r.roles),
                "test": r.nodeid,
            }
            for r in sorted(results, key=lambda r: r.case.id)
        ],
    }


def _badge(verdict: str) -> str:
    colour = _COLOURS.get(verdict, "#333")
    return f'<span style="color:{colour};font-weight:bold">{html.escape(verdict)}</span>'


def to_html(report: dict[str, Any]) -> str:
    e = html.escape
    rows = report["results"]
    by_theme: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        by_theme[r["theme"]][r["verdict"]] += 1
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>R197 conformance: {e(report['implementation'])}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}"
        "th{background:#eee}</style></head><body>",
        f"<h1>Conformance report: {e(report['implementation'])}</h1>",
        f"<p>{e(report['date'])}. Roles under test: "
        + (
            ", ".join(f"{e(k)} = {e(v)}" for k, v in report["roles"].items())
            or "the reference stack"
        )
        + "</p>",
        "<h2>Summary by ITU PP Resolution 197 theme</h2><table><tr><th>theme</th>"
        + "".join(f"<th>{v}</th>" for v in VERDICTS)
        + "</tr>",
    ]
    for theme in THEMES:
        counts = by_theme.get(theme, Counter())
        parts.append(
            f"<tr><td>{theme}</td>"
            + "".join(f"<td>{counts.get(v, 0)}</td>" for v in VERDICTS)
            + "</tr>"
        )
    parts.append("</table><h2>Requirements and the tests that cover them</h2><table>")
    parts.append("<tr><th>clause</th><th>test cases and verdicts</th></tr>")
    clauses: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for r in rows:
        for clause in r["clauses"]:
            clauses[clause].append((r["id"], r["verdict"]))
    for clause in sorted(clauses):
        cells = ", ".join(f"{e(i)} {_badge(v)}" for i, v in clauses[clause])
        parts.append(f"<tr><td>{e(clause)}</td><td>{cells}</td></tr>")
    parts.append(
        "</table><h2>Test cases</h2><table><tr><th>id</th><th>objective</th><th>clauses</th>"
    )
    parts.append("<th>theme</th><th>PICS</th><th>verdict</th><th>detail</th></tr>")
    for r in rows:
        parts.append(
            f"<tr><td>{e(r['id'])}</td><td>{e(r['objective'])}</td><td>{e('; '.join(r['clauses']))}</td>"
            f"<td>{e(r['theme'])}</td><td>{e(', '.join(r['pics']))}</td><td>{_badge(r['verdict'])}</td>"
            f"<td>{e(r['detail'][:400])}</td></tr>"
        )
    parts.append("</table>")
    figures = [(r["id"], k, v) for r in rows for k, v in r["figures"].items()]
    if figures:
        parts.append(
            "<h2>Measured figures</h2><table><tr><th>test</th><th>figure</th><th>value</th></tr>"
        )
        parts += [f"<tr><td>{e(i)}</td><td>{e(k)}</td><td>{v:g}</td></tr>" for i, k, v in figures]
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write(directory: Path, report: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(report, indent=2))
    (directory / "report.html").write_text(to_html(report))
