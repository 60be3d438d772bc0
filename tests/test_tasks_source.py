"""Background work in gateway/ and devices/ goes through their task helpers (DESIGN 4): no loose
tasks, no hand-written cancel loops, no exceptions swallowed around shutdown."""

from __future__ import annotations

import ast

import pytest

from tests.conftest import ROOT

HELPERS = {"tasks.py"}  # gateway/tasks.py, devices/tasks.py: the one place tasks are handled
LOOSE = {"create_task", "ensure_future", "gather"}  # tasks outside a TaskGroup
BROAD = {"Exception", "BaseException"}


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def problems(tree: ast.AST) -> list[str]:
    """Each place in ``tree`` that handles tasks by hand, as "line: what"."""
    found: list[str] = []

    def visit(node: ast.AST, in_loop: bool) -> None:
        if isinstance(node, ast.Call):
            called = _name(node.func)
            if called == "suppress" and any(_name(arg) in BROAD for arg in node.args):
                found.append(f"{node.lineno}: suppress(Exception)")
            if called in LOOSE and _name(getattr(node.func, "value", node.func)) == "asyncio":
                found.append(f"{node.lineno}: asyncio.{called}")
            if called == "cancel" and in_loop:
                found.append(f"{node.lineno}: .cancel() in a loop")
        looping = isinstance(
            node, ast.For | ast.AsyncFor | ast.While | ast.ListComp | ast.SetComp | ast.GeneratorExp
        )
        for child in ast.iter_child_nodes(node):
            visit(child, in_loop or looping)

    visit(tree, False)
    return found


@pytest.mark.parametrize("package", ["gateway", "devices"])
def test_background_work_goes_through_the_task_helper(package: str) -> None:
    """No suppress(Exception), asyncio.create_task/gather or .cancel() loop outside tasks.py."""
    found = [
        f"{path.relative_to(ROOT)}:{problem}"
        for path in sorted((ROOT / package).rglob("*.py"))
        if path.name not in HELPERS
        for problem in problems(ast.parse(path.read_text(), str(path)))
    ]
    assert found == []


def test_the_source_check_sees_what_it_forbids() -> None:
    """Each forbidden form is reported (so an empty answer above means something)."""
    code = """
import asyncio, contextlib
async def stop(tasks):
    extra = asyncio.create_task(asyncio.sleep(1))
    for task in tasks:
        task.cancel()
    [task.cancel() for task in tasks]
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await asyncio.gather(*tasks)
"""
    assert [p.split(": ")[1] for p in problems(ast.parse(code))] == [
        "asyncio.create_task",
        ".cancel() in a loop",
        ".cancel() in a loop",
        "suppress(Exception)",
        "asyncio.gather",
    ]
