"""The conformance reports (``report.json`` under a directory, as ``testbed conformance``
writes them: conformance/report.py) and an interop matrix of them, case by implementation.

Read here again rather than imported from conformance/ (DESIGN.md section 2): only the JSON
report format is shared.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

log = logging.getLogger("city_platform.dashboard")

MAX_REPORTS = 200


def find(root: Path) -> list[Path]:
    """Every report.json under ``root`` (itself included), newest first."""
    if not root.is_dir():
        return []
    found = sorted(root.rglob("report.json"), key=lambda p: p.stat().st_mtime, reverse=True)
    return found[:MAX_REPORTS]


def name_of(root: Path, path: Path) -> str:
    """A report's name: its directory relative to ``root`` ("." for root's own)."""
    return path.parent.relative_to(root).as_posix()


def load(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("dashboard: unreadable report %s: %s", path, exc)
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("results"), list) else None


def listing(root: Path) -> list[dict[str, Any]]:
    """One summary row per readable report."""
    rows = []
    for path in find(root):
        doc = load(path)
        if doc is None:
            continue
        rows.append({
            "name": name_of(root, path),
            "implementation": str(doc.get("implementation", "?")),
            "date": str(doc.get("date", "")),
            "summary": doc.get("summary", {}),
            "cases": len(doc["results"]),
        })  # fmt: skip
    return rows


def by_name(root: Path, name: str) -> dict[str, Any] | None:
    """The report called ``name`` (from :func:`listing`), never a file outside ``root``."""
    for path in find(root):
        if name_of(root, path) == name:
            return load(path)
    return None


def matrix(root: Path) -> dict[str, Any]:
    """Case id -> implementation -> verdict (the worst of a case's runs, as the report's)."""
    worst = ("error", "fail", "inconclusive", "n/a", "pass")
    columns: list[str] = []
    rows: dict[str, dict[str, str]] = {}
    for path in find(root):
        doc = load(path)
        if doc is None:
            continue
        column = f"{doc.get('implementation', '?')} ({name_of(root, path)})"
        columns.append(column)
        for result in doc["results"]:
            case, verdict = str(result.get("id")), str(result.get("verdict"))
            cell = rows.setdefault(case, {})
            old = cell.get(column)
            if old is None or (verdict in worst and worst.index(verdict) < _rank(worst, old)):
                cell[column] = verdict
    return {"implementations": columns, "cases": dict(sorted(rows.items()))}


def _rank(order: tuple[str, ...], verdict: str) -> int:
    return order.index(verdict) if verdict in order else len(order)
