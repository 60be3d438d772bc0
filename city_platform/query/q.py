"""The NGSI-LD query language ``q`` (ETSI GS CIM 009 4.9): parser and evaluator.

Grammar (4.9, with the choices we made where the clause leaves room)::

    Query     = Term *( ( ";" / "|" ) Term )     ; ";" (AND) binds tighter than "|" (OR)
    Term      = "(" Query ")" / Attr [ Op Value ] / "!" Attr
    Attr      = Name *( "." Name ) *( "[" Name *( "." Name ) "]" )
    Op        = "==" / "!=" / ">=" / ">" / "<=" / "<" / "~=" / "!~="
    Value     = Single / Single 1*( "," Single ) / Single ".." Single
    Single    = quoted string / number / true / false / dateTime / date / time / bare word

``a.b`` names the sub-attribute ``b`` of attribute ``a`` (or its ``observedAt`` / ``unitCode``
...); ``a[k][m]`` looks inside a JSON value.  A term without an operator tests existence.  When
the target value is an array, the term holds when any element satisfies it (4.9).  A bare word
that is not a number, boolean or time is taken as a string, as Orion-LD does.

Errors are :class:`InvalidRequest` with the position of the fault, or :class:`TooComplexQuery`
when nesting or length exceed what we evaluate.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Any, Literal, Protocol

from city_platform.errors import InvalidRequest, TooComplexQuery
from city_platform.query.regex import Regex, RegexError, compile_regex

Op = Literal["==", "!=", ">=", ">", "<=", "<", "~=", "!~="]
OPS: tuple[Op, ...] = ("!~=", "==", "!=", ">=", "<=", "~=", ">", "<")
MAX_DEPTH = 16
MAX_TERMS = 64
MAX_LENGTH = 4096
# Members of an attribute instance that ``a.b`` may name besides sub-attributes (4.5.2).
META = frozenset({"observedAt", "unitCode", "datasetId", "createdAt", "modifiedAt", "type"})
VALUE_KEYS = ("value", "object", "languageMap", "valueList", "objectList", "json", "vocab")
_NAME = re.compile(r"[A-Za-z0-9_@:#/\-]+")
# \d+(?:\.\d*)? rather than \d+\.?\d*: the latter backtracks quadratically on a long run of
# digits that fails to match (100 000 digits and an 'x' took minutes).
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TIME = re.compile(r"\d{2}:\d{2}(:\d{2}(\.\d+)?)?Z?")


class QExpr(Protocol):
    def matches(self, entity: dict[str, Any]) -> bool: ...

    def attributes(self) -> frozenset[str]:
        """Expanded names of the attributes the expression reads."""
        ...


@dataclass(frozen=True)
class Literal_:
    """One value written in a query; ``kind`` says how to compare it."""

    value: Any
    kind: Literal["str", "num", "bool", "datetime", "date", "time"]


@dataclass(frozen=True)
class Path:
    attr: str  # expanded IRI
    sub: tuple[str, ...]  # sub-attribute IRIs or META names
    keys: tuple[str, ...]  # keys inside a JSON value

    def values(self, entity: dict[str, Any]) -> Iterator[Any]:
        """Every value the path reaches, over all instances (datasetIds) of the attribute."""
        for inst in entity.get("attrs", {}).get(self.attr, ()):
            yield from self._from_instance(inst)

    def _from_instance(self, inst: dict[str, Any]) -> Iterator[Any]:
        node: Any = inst
        for name in self.sub:
            if not isinstance(node, dict) or name not in node:
                return
            node = node[name]
            if isinstance(node, list):  # a sub-attribute is a list of instances
                node = node[0] if node else None
        value = _instance_value(node) if self.sub == () or isinstance(node, dict) else node
        if value is None:
            return
        for key in self.keys:
            if not isinstance(value, dict) or key not in value:
                return
            value = value[key]
        yield value


def _instance_value(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    for key in VALUE_KEYS:
        if key in node:
            value = node[key]
            if key == "languageMap" and isinstance(value, dict):
                return list(value.values())
            return value
    return None


@dataclass(frozen=True)
class Term:
    path: Path
    op: Op | None = None
    values: tuple[Literal_, ...] = ()
    range_: tuple[Literal_, Literal_] | None = None
    pattern: Regex | None = None

    def attributes(self) -> frozenset[str]:
        return frozenset({self.path.attr})

    def matches(self, entity: dict[str, Any]) -> bool:
        for target in self.path.values(entity):
            if self.op is None:
                return True
            items = target if isinstance(target, list) else [target]
            if self.op in {"!=", "!~="}:
                # "!=" holds when no element equals (4.9: the negation of "==").
                if all(self._test(item) for item in items):
                    return True
            elif any(self._test(item) for item in items):
                return True
        return False

    def _test(self, target: Any) -> bool:
        op = self.op
        if op in {"~=", "!~="}:
            assert self.pattern is not None
            hit = isinstance(target, str) and self.pattern.search(target) is not None
            return hit if op == "~=" else not hit
        if self.range_ is not None:
            low, high = self.range_
            inside = _compare(target, low, operator.ge) and _compare(target, high, operator.le)
            return inside if op == "==" else not inside
        if op == "==":
            return any(_compare(target, v, operator.eq) for v in self.values)
        if op == "!=":
            return not any(_compare(target, v, operator.eq) for v in self.values)
        cmp = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}[op or ""]
        return _compare(target, self.values[0], cmp)


@dataclass(frozen=True)
class Absent:
    path: Path

    def attributes(self) -> frozenset[str]:
        return frozenset({self.path.attr})

    def matches(self, entity: dict[str, Any]) -> bool:
        return next(self.path.values(entity), None) is None


@dataclass(frozen=True)
class And:
    parts: tuple[QExpr, ...]

    def matches(self, entity: dict[str, Any]) -> bool:
        return all(p.matches(entity) for p in self.parts)

    def attributes(self) -> frozenset[str]:
        return frozenset().union(*(p.attributes() for p in self.parts))


@dataclass(frozen=True)
class Or:
    parts: tuple[QExpr, ...]

    def matches(self, entity: dict[str, Any]) -> bool:
        return any(p.matches(entity) for p in self.parts)

    def attributes(self) -> frozenset[str]:
        return frozenset().union(*(p.attributes() for p in self.parts))


def _coerce(target: Any, lit: Literal_) -> tuple[Any, Any] | None:
    """Both sides in one comparable domain, or None when they cannot be compared."""
    kind = lit.kind
    if kind == "num":
        if isinstance(target, bool) or not isinstance(target, int | float):
            return None
        return target, lit.value
    if kind == "bool":
        return (target, lit.value) if isinstance(target, bool) else None
    if not isinstance(target, str):
        return None
    if kind == "datetime":
        parsed = _parse_datetime(target)
        return (parsed, lit.value) if parsed is not None else None
    if kind in {"date", "time"}:
        # Dates and times compare as their ISO text, which orders like the values themselves.
        return target, str(lit.value)
    return target, lit.value


def _compare(target: Any, lit: Literal_, cmp: Callable[[Any, Any], bool]) -> bool:
    pair = _coerce(target, lit)
    if pair is None:
        return False
    try:
        return bool(cmp(pair[0], pair[1]))
    except TypeError:  # e.g. naive against aware datetimes
        return False


def _parse_datetime(text: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed


class _Parser:
    def __init__(self, text: str, expand: Callable[[str], str]) -> None:
        self.text = text
        self.pos = 0
        self.expand = expand
        self.terms = 0

    def fail(self, message: str, pos: int | None = None) -> InvalidRequest:
        where = self.pos if pos is None else pos
        return InvalidRequest(f"q: {message} at position {where} in {self.text!r}")

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> QExpr:
        expr = self.parse_or(0)
        if self.pos < len(self.text):
            raise self.fail(f"unexpected {self.peek()!r}")
        return expr

    def parse_or(self, depth: int) -> QExpr:
        if depth > MAX_DEPTH:
            raise TooComplexQuery(f"q: parentheses nested deeper than {MAX_DEPTH}")
        parts = [self.parse_and(depth)]
        while self.peek() == "|":
            self.pos += 1
            parts.append(self.parse_and(depth))
        return parts[0] if len(parts) == 1 else Or(tuple(parts))

    def parse_and(self, depth: int) -> QExpr:
        parts = [self.parse_term(depth)]
        while self.peek() == ";":
            self.pos += 1
            parts.append(self.parse_term(depth))
        return parts[0] if len(parts) == 1 else And(tuple(parts))

    def parse_term(self, depth: int) -> QExpr:
        self.terms += 1
        if self.terms > MAX_TERMS:
            raise TooComplexQuery(f"q: more than {MAX_TERMS} terms")
        if self.peek() == "(":
            start = self.pos
            self.pos += 1
            inner = self.parse_or(depth + 1)
            if self.peek() != ")":
                raise self.fail(f"'(' at position {start} is not closed")
            self.pos += 1
            return inner
        if self.peek() == "!":  # "!attr": the attribute does not exist (4.9)
            self.pos += 1
            return Absent(self.parse_path())
        path = self.parse_path()
        op = self.parse_op()
        if op is None:
            return Term(path)
        if op in {"~=", "!~="}:
            return Term(path, op, pattern=self.parse_pattern())
        start = self.pos
        raw = self.take_value()
        if not raw:
            raise self.fail(f"missing value after {op!r}", start)
        if ".." in _outside_quotes(raw):
            if op not in {"==", "!="}:
                raise self.fail(f"a range needs '==' or '!=', not {op!r}", start)
            low, high = _split_outside_quotes(raw, "..", 1)
            return Term(path, op, range_=(self.literal(low, start), self.literal(high, start)))
        items = _split_outside_quotes(raw, ",")
        if len(items) > 1 and op not in {"==", "!="}:
            raise self.fail(f"a list of values needs '==' or '!=', not {op!r}", start)
        return Term(path, op, values=tuple(self.literal(i, start) for i in items))

    def parse_path(self) -> Path:
        start = self.pos
        names = [self.name()]
        while self.peek() == ".":
            self.pos += 1
            names.append(self.name())
        keys: list[str] = []
        while self.peek() == "[":
            self.pos += 1
            keys.append(self.name())
            while self.peek() == ".":  # a[b.c] is a[b][c] (4.9)
                self.pos += 1
                keys.append(self.name())
            if self.peek() != "]":
                raise self.fail("expected ']'")
            self.pos += 1
        try:
            attr = self.expand(names[0])
            sub = tuple(n if n in META else self.expand(n) for n in names[1:])
        except ValueError as exc:
            raise self.fail(str(exc), start) from None
        return Path(attr, sub, tuple(keys))

    def name(self) -> str:
        match = _NAME.match(self.text, self.pos)
        if match is None:
            found = repr(self.peek()) if self.peek() else "end of query"
            raise self.fail(f"expected an attribute name, found {found}")
        self.pos = match.end()
        return match.group()

    def parse_op(self) -> Op | None:
        for op in OPS:
            if self.text.startswith(op, self.pos):
                self.pos += len(op)
                if self.peek() in {"=", "<", ">", "~"} and self.peek():
                    raise self.fail(f"unknown operator {op + self.peek()!r}", self.pos - len(op))
                return op
        if self.peek() in {"", ";", "|", ")"}:
            return None
        if self.peek() in {"=", "!", "~"}:
            raise self.fail(f"unknown operator starting with {self.peek()!r}")
        raise self.fail(f"unexpected {self.peek()!r} after attribute name")

    def take_value(self) -> str:
        """The raw value text up to the next ';', '|' or ')' outside quotes."""
        start = self.pos
        in_quote = False
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and in_quote:
                self.pos += 2
                continue
            if ch == '"':
                in_quote = not in_quote
            elif not in_quote and ch in ";|)":
                break
            self.pos += 1
        if in_quote:
            raise self.fail("unterminated string", start)
        return self.text[start : self.pos]

    def parse_pattern(self) -> Regex:
        start = self.pos
        if self.peek() == '"':
            raw = self.take_value()
            # A regex keeps its own escapes ("^B\d+"): only \" stands for a quote in it.
            text = _unquote(raw, regex=True)
            if text is None:
                raise self.fail("a quoted pattern must be one string", start)
        else:
            # Unquoted: the pattern's own parentheses are kept; ';', '|' and an unmatched ')'
            # end it (quote a pattern that needs '|').
            depth = 0
            while self.pos < len(self.text):
                ch = self.text[self.pos]
                if ch == "\\":
                    self.pos += 2
                    continue
                if ch in ";|" or (ch == ")" and depth == 0):
                    break
                depth += {"(": 1, ")": -1}.get(ch, 0)
                self.pos += 1
            text = self.text[start : self.pos]
        if not text:
            raise self.fail("missing pattern after '~='", start)
        try:
            return compile_regex(text)  # RE2: linear-time matching, see regex.py
        except RegexError as exc:
            raise self.fail(f"invalid regular expression ({exc})", start) from None

    def literal(self, raw: str, pos: int) -> Literal_:
        text = raw.strip()
        if not text:
            raise self.fail("empty value", pos)
        if text.startswith('"'):
            unquoted = _unquote(text)
            if unquoted is None:
                raise self.fail(f"malformed string {text!r}", pos)
            return Literal_(unquoted, "str")
        if text in {"true", "false"}:
            return Literal_(text == "true", "bool")
        if _NUMBER.fullmatch(text):
            return Literal_(float(text) if any(c in text for c in ".eE") else int(text), "num")
        if "T" in text and _DATE.match(text):
            parsed = _parse_datetime(text)
            if parsed is None:
                raise self.fail(f"invalid dateTime {text!r} (UTC offset required)", pos)
            return Literal_(parsed, "datetime")
        if _DATE.fullmatch(text):
            try:
                return Literal_(date.fromisoformat(text).isoformat(), "date")
            except ValueError:
                raise self.fail(f"invalid date {text!r}", pos) from None
        if _TIME.fullmatch(text):
            try:
                time.fromisoformat(text.rstrip("Z"))
            except ValueError:
                raise self.fail(f"invalid time {text!r}", pos) from None
            return Literal_(text, "time")
        if any(c in text for c in '"()[]=<>!~'):
            raise self.fail(f"malformed value {text!r}", pos)
        return Literal_(text, "str")


def _unquote(text: str, *, regex: bool = False) -> str | None:
    """The string a quoted value stands for; ``regex``: backslash escapes other than \" are
    the pattern's own and are kept."""
    if len(text) < 2 or not (text.startswith('"') and text.endswith('"')):
        return None
    body = text[1:-1]
    out: list[str] = []
    i = 0
    while i < len(body):
        ch = body[i]
        if ch == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append(ch + nxt if regex and nxt != '"' else nxt)
            i += 2
            continue
        if ch == '"':
            return None
        out.append(ch)
        i += 1
    return "".join(out)


def _outside_quotes(text: str) -> str:
    """The text with quoted parts blanked, to look for separators."""
    return re.sub(r'"(?:\\.|[^"\\])*"', lambda m: " " * len(m.group()), text)


def _split_outside_quotes(text: str, sep: str, maxsplit: int = -1) -> list[str]:
    blank = _outside_quotes(text)
    parts: list[str] = []
    start = 0
    idx = blank.find(sep)
    while idx != -1 and (maxsplit < 0 or len(parts) < maxsplit):
        parts.append(text[start:idx])
        start = idx + len(sep)
        idx = blank.find(sep, start)
    parts.append(text[start:])
    return parts


def parse_q(text: str, expand: Callable[[str], str]) -> QExpr:
    """Parse ``q``; attribute names are expanded with ``expand`` (the request's context)."""
    if len(text) > MAX_LENGTH:
        raise TooComplexQuery(f"q: longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise InvalidRequest("q: empty query")
    return _Parser(text.strip(), expand).parse()
