"""Static checks run as tests, so the README's one test command covers them too."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.lint


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], check=False, cwd=ROOT, capture_output=True, text=True
    )


def test_ruff_lint_is_clean() -> None:
    """ruff finds no lint problem in the tree."""
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    """The tree is formatted with ruff format."""
    result = _run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_passes_on_our_packages() -> None:
    """mypy --strict (configured in pyproject.toml) reports no error on our packages."""
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
