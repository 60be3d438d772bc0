# ruff: noqa: E501  # HTML rows read best on one line
"""Verdict reports: JSON (machine-readable, merged by `testbed matrix`), HTML and Markdown.

Besides each case's verdict, a report has the per-requirement table (Sparkplug TCK style): for
each requirement of conformance/requirements.toml, the cases that verify it and how many of
them passed (verified), failed (fail or error) or were not executed (n/a, inconclusive, or not
run, e.g. deselected with -k); and the requirements no collected case verifies.
"""

from __future__ import annotations

import html
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from conformance.model import THEMES, Case, Result
from conformance.requirements import Registry, registry

VERDICTS = ("pass", "fail", "inconclusive", "n/a", "error")
# A requirement's status: verified when all its cases passed, failed when one failed, partly
# verified when some passed and the others were not executed.
STATUSES = ("verified", "partly verified", "failed", "not executed", "not covered")
_WORST_FIRST = ("error", "fail", "inconclusive", "n/a", "pass")  # a parametrized case's verdict
_COLOURS = {
    "pass": "#1b7f3b",
    "fail": "#b3261e",
    "inconclusive": "#8a6d00",
    "n/a": "#666",
    "error": "#6a1b9a",
}


def case_verdicts(results: Iterable[Result]) -> dict[str, str]:
    """One verdict per case: the worst of its (parametrized) runs."""
    runs: dict[str, set[str]] = defaultdict(set)
    for r in results:
        runs[r.case.id].add(r.verdict)
    return {cid: next(v for v in _WORST_FIRST if v in got) for cid, got in runs.items()}


def requirement_table(
    results: list[Result], cases: Iterable[Case] = (), known: Registry | None = None
) -> list[dict[str, Any]]:
    """Per requirement: its cases with their verdicts ("not run" if none), counts, status."""
    known = known or registry()
    verdicts = case_verdicts(results)
    declared = {c.id: c for c in cases} | {r.case.id: r.case for r in results}
    rows = []
    for req in known.requirements.values():
        mine = sorted(cid for cid, c in declared.items() if req.id in c.verifies)
        per = {cid: verdicts.get(cid, "not run") for cid in mine}
        verified = sum(v == "pass" for v in per.values())
        failed = sum(v in ("fail", "error") for v in per.values())
        not_executed = len(per) - verified - failed
        if not per:
            status = "not covered"
        elif failed:
            status = "failed"
        elif verified == len(per):
            status = "verified"
        else:
            status = "partly verified" if verified else "not executed"
        rows.append({"id": req.id, "citation": req.citation, "document": req.document.name,
                     "section": req.section, "text": req.text, "cases": per, "verified": verified,
                     "failed": failed, "not_executed": not_executed, "status": status})  # fmt: skip
    return rows


def to_json(
    results: list[Result],
    implementation: str,
    roles: dict[str, str],
    cases: Iterable[Case] = (),
) -> dict[str, Any]:
    """The verdict report; ``cases`` are all collected cases (those not run count as such)."""
    table = requirement_table(results, cases)
    return {
        "implementation": implementation,
        "roles": roles,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "summary": dict(Counter(r.verdict for r in results)),
        "requirement_summary": {s: sum(r["status"] == s for r in table) for s in STATUSES},
        "requirements": table,
        "uncovered": [r["id"] for r in table if r["status"] == "not covered"],
        "results": [
            {
                "id": r.case.id,
                "objective": r.case.objective,
                "verifies": list(r.case.verifies),
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
    parts.append("</table>")
    parts += _requirements_html(report)
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


def _requirements_html(report: dict[str, Any]) -> list[str]:
    """The per-requirement table (absent from reports written before it existed)."""
    e = html.escape
    table = report.get("requirements")
    if table is None:
        return []
    counts = report.get("requirement_summary", {})
    parts = [
        "<h2>Requirements: verified, failed, not executed</h2>",
        "<p>" + ", ".join(f"{e(s)}: {counts.get(s, 0)}" for s in STATUSES) + " (of "
        f"{len(table)}). Not executed: n/a, inconclusive, or not run in this run.</p>",
        "<table><tr><th>requirement</th><th>clause</th><th>requires</th><th>cases and verdicts"
        "</th><th>verified</th><th>failed</th><th>not executed</th><th>status</th></tr>",
    ]
    for r in table:
        cells = ", ".join(f"{e(i)} {_badge(v)}" for i, v in r["cases"].items()) or "none"
        parts.append(
            f"<tr><td>{e(r['id'])}</td><td>{e(r['citation'])}</td><td>{e(r['text'])}</td><td>{cells}</td>"
            f"<td>{r['verified']}</td><td>{r['failed']}</td><td>{r['not_executed']}</td><td>{e(r['status'])}</td></tr>"
        )
    parts.append("</table><h2>Requirements no case covers</h2>")
    uncovered = report.get("uncovered", [])
    parts.append(
        "<ul>" + "".join(f"<li>{e(i)}</li>" for i in uncovered) + "</ul>"
        if uncovered
        else "<p>None.</p>"
    )
    return parts


def to_markdown(report: dict[str, Any]) -> str:
    """The summary and the per-requirement table in Markdown (for a pull request or a wiki)."""
    lines = [f"# Conformance report: {report['implementation']}", "", report["date"], ""]
    lines.append("Verdicts: " + ", ".join(f"{v} {report['summary'].get(v, 0)}" for v in VERDICTS))
    table = report.get("requirements", [])
    counts = report.get("requirement_summary", {})
    lines += ["", "## Requirements", ""]
    lines.append("Requirements: " + ", ".join(f"{s} {counts.get(s, 0)}" for s in STATUSES) + ".")
    lines += ["", "| requirement | clause | cases | verified | failed | not executed | status |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for r in table:
        cases = ", ".join(f"{i} {v}" for i, v in r["cases"].items()) or "none"
        lines.append(
            f"| {r['id']} | {r['citation']} | {cases} | {r['verified']} | {r['failed']} "
            f"| {r['not_executed']} | {r['status']} |"
        )
    uncovered = report.get("uncovered", [])
    lines += ["", "Requirements no case covers: " + (", ".join(uncovered) or "none") + "."]
    return "\n".join(lines) + "\n"


def write(directory: Path, report: dict[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(report, indent=2))
    (directory / "report.html").write_text(to_html(report))
    (directory / "report.md").write_text(to_markdown(report))
