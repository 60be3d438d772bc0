"""Reading one secret (a token, a password) from a file named by a ``--...-file`` option.

Secrets come in files, not on the command line, so that ``ps`` does not show them; every
program reads them the same way: the file's text with the white space around it dropped.
"""

from __future__ import annotations

from pathlib import Path


class EmptySecretError(ValueError):
    """The file exists but holds nothing but white space."""


def read_secret(path: Path | str) -> str:
    """The secret in ``path``; OSError when it cannot be read, EmptySecretError when empty."""
    value = Path(path).read_text(encoding="utf-8").strip()
    if not value:
        raise EmptySecretError(f"{path} is empty")
    return value
