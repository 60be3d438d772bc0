"""The conformance reports (``report.json`` under a directory, as ``testbed conformance``
writes them: conformance/report.py) and an interop matrix of them, case by implementation.

Read here again rather than imported from conformance/ (DESIGN.md section 2): only the JSON
report format is shared.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("city_platform.dashboard")

MAX_REPORTS = 200
_WARNED: set[Path] = set()
MAX_BYTES = 20_000_000  # a report of every case with long details is a few MB


def find(roots: Sequence[Path]) -> list[tuple[str, Path]]:
    """(name, path) of every JSON report under ``roots``, newest first: each ``report.json``
    (named by its directory) and other ``*.json`` files, such as docs/interop/<impl>.json
    (named by their path without the suffix); each name begins with its root's name."""
    found: list[tuple[float, str, Path]] = []
    for root in roots:
        if not root.is_dir():
            continue
        for path in root.rglob("*.json"):
            try:
                stat = path.stat()
            except OSError:
                continue
            if stat.st_size > MAX_BYTES:
                continue
            rel = path.relative_to(root)
            inner = rel.parent if path.name == "report.json" else rel.with_suffix("")
            name = "/".join(p for p in (root.name, inner.as_posix()) if p and p != ".")
            found.append((stat.st_mtime, name, path))
    found.sort(key=lambda f: f[0], reverse=True)
    return [(name, path) for _, name, path in found[:MAX_REPORTS]]


def load(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        if path not in _WARNED:  # once per file, not at every listing
            _WARNED.add(path)
            log.warning("dashboard: unreadable report %s: %s", path, exc)
        return None
    if not isinstance(doc, dict) or not isinstance(doc.get("results"), list):
        return None  # some other JSON file: not a verdict report
    return doc


def listing(roots: Sequence[Path]) -> list[dict[str, Any]]:
    """One summary row per readable report."""
    rows = []
    for name, path in find(roots):
        doc = load(path)
        if doc is None:
            continue
        rows.append({
            "name": name,
            "implementation": str(doc.get("implementation", "?")),
            "date": str(doc.get("date", "")),
            "summary": doc.get("summary", {}),
            "cases": len(doc["results"]),
        })  # fmt: skip
    return rows


def by_name(roots: Sequence[Path], name: str) -> dict[str, Any] | None:
    """The report called ``name`` (from :func:`listing`): never a file outside ``roots``."""
    for found, path in find(roots):
        if found == name:
            return load(path)
    return None


def matrix(roots: Sequence[Path]) -> dict[str, Any]:
    """Case id -> implementation -> verdict (the worst of a case's runs, as the report's)."""
    worst = ("error", "fail", "inconclusive", "n/a", "pass")
    columns: list[str] = []
    rows: dict[str, dict[str, str]] = {}
    for name, path in find(roots):
        doc = load(path)
        if doc is None:
            continue
        column = f"{doc.get('implementation', '?')} ({name})"
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
