"""DESIGN.md §2: which package may import which, checked on the source with ``ast``."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

OURS = {"city_platform", "gateway", "devices", "conformance", "testbed"}
# package -> what of ours it may import (prefixes)
ALLOWED: dict[str, tuple[str, ...]] = {
    "devices": ("devices",),
    "gateway": ("gateway", "city_platform.models"),
    "city_platform": ("city_platform",),
    "conformance": ("conformance", "city_platform", "gateway", "devices", "testbed"),
    "testbed": ("testbed", "city_platform", "gateway", "devices", "conformance"),
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """The absolute module names a file imports, with line numbers."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend((node.lineno, f"{node.module}.{a.name}") for a in node.names)
    return found


def violations(package: str, root: Path = ROOT) -> list[str]:
    bad = []
    for path in sorted((root / package).rglob("*.py")):
        for line, name in imports_of(path):
            top = name.split(".")[0]
            if top in OURS and not any(
                name == p or name.startswith(p + ".") for p in ALLOWED[package]
            ):
                bad.append(f"{path.relative_to(root)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_design_allows(package: str) -> None:
    """No module imports a package of ours that DESIGN.md §2 forbids it."""
    assert violations(package) == []


def test_import_rule_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    """A gateway module importing platform internals is reported; the contract module is not."""
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "m.py").write_text(
        "from city_platform.broker import ContextBroker\nimport city_platform.models\n"
    )
    assert violations("gateway", tmp_path) == [
        "gateway/m.py:1 imports city_platform.broker.ContextBroker"
    ]
