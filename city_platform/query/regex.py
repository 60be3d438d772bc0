"""User regular expressions (``idPattern``, ``q`` ``~=``) compiled with RE2, a linear-time engine.

CIM 009 4.9 (``~=``) and 5.2.33 / 6.4.3.2 (``idPattern``) take a regular expression from the
client.  Python's :mod:`re` backtracks: a 12-character pattern such as ``^(a+)+$`` against an id
of 30 ``a`` and a ``!`` takes seconds, and the event loop answers nobody meanwhile.  RE2 matches
in time linear in the text, so a hostile pattern costs no more than a plain one.

RE2 refuses what it cannot run in linear time (backreferences ``\\1``, lookaround ``(?=``,
``(?!``, ``(?<=``), and patterns whose automaton would exceed its memory bound; those become
:class:`RegexError`, which callers turn into 400 BadRequestData / InvalidRequest.

This module is the one place where ``re2`` objects and exceptions become ours.
"""

from __future__ import annotations

from typing import Protocol

import re2  # type: ignore[import-untyped]

# RE2 logs each refused pattern to stderr through absl; the error is ours to report instead.
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False

# A pattern longer than this is refused before compiling (a q or idPattern is a query
# parameter; URLs of a few KiB are the practical limit anyway).
MAX_PATTERN_LENGTH = 4096


class RegexError(ValueError):
    """A pattern RE2 cannot compile; ``str(error)`` says why, for the ProblemDetails."""


class Regex(Protocol):
    """What we use of a compiled pattern (``re.Pattern`` and RE2's regexp both fit)."""

    def search(self, text: str) -> object | None: ...


def compile_regex(pattern: str) -> Regex:
    """``pattern`` compiled by RE2 (``re2.compile`` keeps the last 128 compiled patterns, so
    subscriptions testing the same pattern on every change do not recompile it).

    Raises :class:`RegexError` for a syntax error, a construct RE2 does not support
    (backreferences, lookaround) or a pattern too long or too large to compile."""
    if not isinstance(pattern, str):
        raise RegexError("a regular expression must be a string")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise RegexError(f"longer than {MAX_PATTERN_LENGTH} characters")
    try:
        compiled: Regex = re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        raise RegexError(_reason(exc)) from None
    except (UnicodeError, ValueError, TypeError) as exc:  # lone surrogates, NUL handling
        raise RegexError(f"not a valid pattern ({exc})") from None
    return compiled


def matches(pattern: str, text: str) -> bool:
    """Whether ``pattern`` is found in ``text``; a pattern RE2 refuses matches nothing (for
    patterns stored before they were checked with RE2, e.g. old subscriptions)."""
    try:
        return compile_regex(pattern).search(text) is not None
    except RegexError:
        return False


def _reason(exc: Exception) -> str:
    raw = exc.args[0] if exc.args else exc
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    hint = ""
    if "invalid perl operator" in text or "invalid escape sequence" in text:
        hint = " (RE2 syntax: backreferences and lookaround are not supported)"
    elif "too large" in text or "too big" in text:
        hint = " (the compiled pattern exceeds the engine's memory bound)"
    return f"{text}{hint}"
