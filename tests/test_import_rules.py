"""DESIGN.md §2: which package may import which, checked on the source with ``ast``.

Counted as imports: ``import a.b``, ``from a.b import c``, relative imports (``from .x import
y``, ``from ..storage import z``, resolved against the importing file's package), and calls of
``importlib.import_module`` / ``__import__`` with a literal module name.  Not counted: programs
of ours started as processes (``python -m gateway``, a console script): a process boundary is
not an import, and that is how the conformance suite and the benchmarks start stacks.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

# Every top-level package of ours, including the two nothing may import: ``benchmarks`` (the
# load generator and its peers) and ``tests``.
OURS = {"city_platform", "gateway", "devices", "conformance", "testbed", "benchmarks", "tests"}
# package -> what of ours it may import (prefixes)
ALLOWED: dict[str, tuple[str, ...]] = {
    "devices": ("devices",),
    "gateway": ("gateway", "city_platform.models"),
    "city_platform": ("city_platform",),
    "conformance": ("conformance", "city_platform", "gateway", "devices", "testbed"),
    "testbed": ("testbed", "city_platform", "gateway", "devices", "conformance"),
    # The benchmarks start whole stacks (platform, gateway, device fleets, via testbed's process
    # layer) and measure them, so they may import any package of ours; not ``tests`` (library
    # code must not depend on the test suite) and, in turn, no package may import them.
    "benchmarks": ("benchmarks", "city_platform", "gateway", "devices", "conformance", "testbed"),
}
# Packages that are never a dependency of another package of ours.
LEAVES = ("benchmarks", "tests")
# Third-party trees that may sit inside ours (the Node-RED peer's npm packages carry Python
# build helpers of node-gyp); they are not our code.
VENDORED = frozenset({"node_modules"})


def _package_of(path: Path, root: Path) -> list[str]:
    """The dotted package a file belongs to, as parts (a package's ``__init__`` is in it)."""
    return list(path.relative_to(root).parent.parts)


def _resolve(package: list[str], level: int, module: str | None) -> str | None:
    """``from <level dots><module> import ...`` in ``package`` as an absolute module name.

    One dot more than the package is deep climbs to the repository root: such an import works
    only when the tree is imported as a namespace from outside, and then it reaches a sibling
    package, so it is checked as the absolute import of that sibling.  None for one climbing
    further (or naming no module at the root): it cannot work at all."""
    if level - 1 > len(package):
        return None
    name = ".".join([*package[: len(package) - level + 1], *([module] if module else [])])
    return name or None


def _literal(node: ast.expr | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _dynamic_import(node: ast.Call, package: list[str]) -> str | None:
    """The module a call ``importlib.import_module("m")``, ``import_module("m")`` or
    ``__import__("m")`` imports, when its name is a literal; None for any other call."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    if name not in ("import_module", "__import__") or not node.args:
        return None
    target = _literal(node.args[0])
    if target is None:
        return None
    keywords = {k.arg: k.value for k in node.keywords}
    if name == "__import__":
        level_node = node.args[4] if len(node.args) > 4 else keywords.get("level")
        level = level_node.value if isinstance(level_node, ast.Constant) else 0
        return _resolve(package, level, target) if isinstance(level, int) and level else target
    if not target.startswith("."):
        return target
    # import_module(".x", package=...): resolved against the literal package given, or against
    # this file's own package for ``__package__`` / ``__name__`` (or none given: it would fail).
    anchor = keywords.get("package", node.args[1] if len(node.args) > 1 else None)
    anchor_name = _literal(anchor)
    parts = anchor_name.split(".") if anchor_name else package
    level = len(target) - len(target.lstrip("."))
    return _resolve(parts, level, target[level:] or None)


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """The absolute module names a file imports, with line numbers; a relative import that
    cannot be resolved is given as written (it starts with a dot)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = _package_of(path, root)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module if node.level == 0 else _resolve(package, node.level, node.module)
            if module is not None:
                found.extend((node.lineno, f"{module}.{a.name}") for a in node.names)
            elif node.level == len(package) + 1 and node.module is None:
                found.extend((node.lineno, a.name) for a in node.names)  # from .. import pkg
            else:
                found.append((node.lineno, "." * node.level + (node.module or "")))
        elif isinstance(node, ast.Call):
            target = _dynamic_import(node, package)
            if target is not None:
                found.append((node.lineno, target))
    return found


def _sources(package: str, root: Path) -> list[Path]:
    return sorted(
        p
        for p in (root / package).rglob("*.py")
        if not VENDORED.intersection(p.relative_to(root).parts)
    )


def violations(package: str, root: Path = ROOT) -> list[str]:
    bad = []
    for path in _sources(package, root):
        for line, name in imports_of(path, root):
            top = name.split(".")[0]
            if name.startswith(".") or (
                top in OURS
                and not any(name == p or name.startswith(p + ".") for p in ALLOWED[package])
            ):
                bad.append(f"{path.relative_to(root)}:{line} imports {name}")
    return bad


def imports_of_leaves(package: str, root: Path = ROOT) -> list[str]:
    """Where ``package`` imports ``benchmarks`` or ``tests`` (other than itself)."""
    bad = []
    for path in _sources(package, root):
        for line, name in imports_of(path, root):
            top = name.split(".")[0]
            if top in LEAVES and top != package:
                bad.append(f"{path.relative_to(root)}:{line} imports {name}")
    return bad


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_package_imports_only_what_design_allows(package: str) -> None:
    """No module imports a package of ours that DESIGN.md §2 forbids it."""
    assert violations(package) == []


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_package_imports_the_benchmarks_or_the_tests(package: str) -> None:
    """No package of ours depends on benchmarks/ or tests/ (they are leaves)."""
    assert imports_of_leaves(package) == []


def test_the_checked_packages_are_all_our_packages() -> None:
    """Every top-level Python package in the tree but tests/ is checked (a new one must be
    given its rules here)."""
    found = {p.parent.name for p in ROOT.glob("*/__init__.py")}
    assert found - {"tests"} == set(ALLOWED)
    assert found <= OURS


def test_import_rule_checker_catches_a_forbidden_import(tmp_path: Path) -> None:
    """A gateway module importing platform internals is reported; the contract module is not."""
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "m.py").write_text(
        "from city_platform.broker import ContextBroker\nimport city_platform.models\n"
    )
    assert violations("gateway", tmp_path) == [
        "gateway/m.py:1 imports city_platform.broker.ContextBroker"
    ]


def test_relative_imports_are_resolved_against_the_files_package(tmp_path: Path) -> None:
    """``from . import x``, ``from .x import y`` and ``from ..x import y`` name modules of the
    file's own package (a package's ``__init__`` counts as inside it); none is reported."""
    api = tmp_path / "city_platform" / "api"
    api.mkdir(parents=True)
    (api / "__init__.py").write_text("from . import routes\nfrom .routes import r\n")
    (api / "m.py").write_text("from ..storage import sqlite\nfrom .. import models\n")
    transports = tmp_path / "gateway" / "transports"
    transports.mkdir(parents=True)
    (transports / "mqtt.py").write_text("from .. import normalizer\nfrom ..uplink import U\n")
    assert imports_of(api / "__init__.py", tmp_path) == [
        (1, "city_platform.api.routes"),
        (2, "city_platform.api.routes.r"),
    ]
    assert imports_of(api / "m.py", tmp_path) == [
        (1, "city_platform.storage.sqlite"),
        (2, "city_platform.models"),
    ]
    assert imports_of(transports / "mqtt.py", tmp_path) == [
        (1, "gateway.normalizer"),
        (2, "gateway.uplink.U"),
    ]
    assert violations("city_platform", tmp_path) == []
    assert violations("gateway", tmp_path) == []


def test_a_relative_import_out_of_the_package_is_reported(tmp_path: Path) -> None:
    """A relative import climbing out of gateway/ to a sibling is checked as the absolute
    import of the sibling (platform internals and devices reported, the contract not); one
    climbing above the repository root cannot work and is reported as written."""
    transports = tmp_path / "gateway" / "transports"
    transports.mkdir(parents=True)
    (tmp_path / "gateway" / "m.py").write_text(
        "from ..city_platform import broker\n"
        "from ..city_platform.models import entity_id\n"
        "from .. import devices\n"
        "from ...outside import x\n"
    )
    (transports / "t.py").write_text("from ...city_platform.storage import sqlite\n")
    assert violations("gateway", tmp_path) == [
        "gateway/m.py:1 imports city_platform.broker",
        "gateway/m.py:3 imports devices",
        "gateway/m.py:4 imports ...outside",
        "gateway/transports/t.py:1 imports city_platform.storage.sqlite",
    ]


def test_literal_dynamic_imports_are_checked(tmp_path: Path) -> None:
    """``importlib.import_module("m")``, ``import_module("m")`` and ``__import__("m")`` with a
    literal name count as imports, relative ones resolved against ``package`` (a literal or
    the file's own); a name computed at run time cannot be checked and is left alone."""
    (tmp_path / "gateway").mkdir()
    (tmp_path / "gateway" / "m.py").write_text(
        "import importlib\n"
        "from importlib import import_module\n"
        "importlib.import_module('city_platform.broker')\n"
        "import_module('city_platform.models')\n"
        "__import__('devices.fleet')\n"
        "importlib.import_module(name)\n"
        "importlib.import_module('.queue', package='gateway')\n"
        "importlib.import_module('..city_platform.storage', __package__)\n"
        "__import__('city_platform', globals(), locals(), ['api'], 0)\n"
    )
    assert violations("gateway", tmp_path) == [
        "gateway/m.py:3 imports city_platform.broker",
        "gateway/m.py:5 imports devices.fleet",
        "gateway/m.py:8 imports city_platform.storage",
        "gateway/m.py:9 imports city_platform",
    ]


def test_importing_the_benchmarks_or_the_tests_is_reported(tmp_path: Path) -> None:
    """A package of ours importing benchmarks or tests is reported by both checks; the
    benchmarks importing each other and the packages they start are not."""
    for package in ("testbed", "benchmarks"):
        (tmp_path / package).mkdir()
    (tmp_path / "testbed" / "m.py").write_text(
        "from benchmarks import loadgen\nimport tests.conftest\n"
    )
    (tmp_path / "benchmarks" / "b.py").write_text(
        "from benchmarks import loadgen\nimport gateway.uplink\nfrom testbed import parts\n"
        "from tests.conftest import ROOT\n"
    )
    expected = [
        "testbed/m.py:1 imports benchmarks.loadgen",
        "testbed/m.py:2 imports tests.conftest",
    ]
    assert violations("testbed", tmp_path) == expected
    assert imports_of_leaves("testbed", tmp_path) == expected
    assert violations("benchmarks", tmp_path) == ["benchmarks/b.py:4 imports tests.conftest.ROOT"]
    assert imports_of_leaves("benchmarks", tmp_path) == [
        "benchmarks/b.py:4 imports tests.conftest.ROOT"
    ]


def test_vendored_trees_are_not_checked(tmp_path: Path) -> None:
    """Python files under node_modules (third-party build helpers) are not our code."""
    vendored = tmp_path / "benchmarks" / "peers" / "node_modules" / "gyp"
    vendored.mkdir(parents=True)
    (vendored / "x.py").write_text("import tests\n")
    assert violations("benchmarks", tmp_path) == []
