"""Read the lab pages of docs/labs/: their console blocks, commands and expected output.

The convention (docs/labs/README.md, "For teachers"):

- a fenced block whose info string is ``console`` holds ``$ command`` lines, each followed by
  the output the student should see; a command line ending in ``\\`` continues on the next;
- ``console background`` marks a block for "another terminal": its commands keep running while
  the rest of the lab goes on (``testbed up``), and their output is checked as they print it;
- an expected line ``...`` stands for any lines; within a line ``...`` is any text and
  ``<something>`` is any non-empty text (a password, a time, a value); runs of spaces match any
  run of spaces. Every other expected line must appear, in this order, within an output line;
- a command that exits non-zero passes only if the block shows output for it (the refusal is
  the lesson, and its text is checked).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

# Blocks may be indented under a numbered step; the closing fence has the same indent.
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```console(?P<bg> background)?[ \t]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$",
    re.M | re.S,
)


@dataclass
class Command:
    line: str  # the command as the student types it (continuations joined)
    expected: list[str] = field(default_factory=list)
    background: bool = False


def commands(page: str) -> list[Command]:
    """The console commands of a lab page, in order."""
    found: list[Command] = []
    for fence in FENCE.finditer(page):
        background = bool(fence.group("bg"))
        indent = len(fence.group("indent"))
        current: Command | None = None
        continued = False
        for raw in (line[indent:] for line in fence.group("body").splitlines()):
            if continued and current is not None:
                current.line += "\n" + raw
                continued = raw.endswith("\\")
            elif raw.startswith("$ "):
                current = Command(raw[2:], background=background)
                found.append(current)
                continued = raw.endswith("\\")
            elif current is not None and raw.strip():
                current.expected.append(raw)
    return found


def pattern(expected: str) -> re.Pattern[str]:
    """An expected output line as a regular expression (placeholders and ellipses are wild)."""
    parts = re.split(r"(<[^<>\s][^<>]*>|\.\.\.|\s+)", expected.strip())
    regex = ""
    for part in parts:
        if not part:
            continue
        if part == "...":
            regex += ".*"
        elif part.startswith("<") and part.endswith(">"):
            regex += ".+?"
        elif part.isspace():
            regex += r"\s+"
        else:
            regex += re.escape(part)
    return re.compile(regex)


def unmatched(expected: list[str], output: str) -> str | None:
    """The first expected line missing from output (in order), or None when all appear."""
    lines = output.splitlines()
    at = 0
    for want in expected:
        if want.strip() == "...":
            continue
        regex = pattern(want)
        while at < len(lines) and not regex.search(lines[at]):
            at += 1
        if at == len(lines):
            return want
        at += 1
    return None


def pages(folder: Path) -> list[Path]:
    """The numbered lab pages (NN-name.md), in order."""
    return sorted(p for p in folder.glob("[0-9][0-9]-*.md"))
