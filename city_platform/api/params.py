"""Parsing of the common query parameters: options/format, pagination, attrs."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from starlette.requests import Request

from city_platform.entities import Mode
from city_platform.errors import BadRequestData, InvalidRequest

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000
_OPTIONS = {
    "keyValues",
    "concise",
    "normalized",
    "sysAttrs",
    "noOverwrite",
    "replace",
    "update",
    "temporalValues",
    "aggregatedValues",
    "noStats",
}


_MODES: tuple[Mode, ...] = ("keyValues", "concise", "normalized")


@dataclass(frozen=True)
class Options:
    mode: Mode
    sys_attrs: bool
    flags: frozenset[str]


def parse_options(options: str | None, fmt: str | None = None) -> Options:
    """``options`` (comma list, 6.3.7) and the newer ``format`` parameter (6.3.18).

    ``simplified`` is the other name of ``keyValues`` in both.  ``format`` names the
    representation when given, whatever ``options`` says (as the ETSI suite's 018_15_07
    expects); an unknown value of either is InvalidRequest (6.3.20; ETSI 018_16)."""
    named = frozenset(o.strip() for o in (options or "").split(",") if o.strip())
    flags = frozenset("keyValues" if o == "simplified" else o for o in named)
    unknown = flags - _OPTIONS
    if unknown:
        raise InvalidRequest(f"options: unknown value(s) {', '.join(sorted(unknown))}")
    modes: set[Mode] = {m for m in _MODES if m in flags}
    if fmt is not None:
        if fmt == "simplified":
            fmt = "keyValues"
        chosen = next((m for m in _MODES if m == fmt), None)
        if chosen is None:
            raise InvalidRequest(f"format: unknown value {fmt!r}")
        modes = {chosen}
    if len(modes) > 1:
        raise BadRequestData(f"options: conflicting representations {', '.join(sorted(modes))}")
    mode: Mode = modes.pop() if modes else "normalized"
    return Options(mode=mode, sys_attrs="sysAttrs" in flags, flags=flags)


def parse_page(limit: str | None, offset: str | None) -> tuple[int, int]:
    """``limit``/``offset`` (5.5.9): non-negative integers; limit at most 1000."""
    try:
        lim = DEFAULT_LIMIT if limit is None else int(limit)
        off = 0 if offset is None else int(offset)
    except ValueError:
        raise InvalidRequest("limit and offset must be integers") from None
    if lim < 0 or off < 0:
        raise BadRequestData("limit and offset must not be negative")
    if lim > MAX_LIMIT:
        raise BadRequestData(f"limit {lim} is larger than the maximum {MAX_LIMIT}")
    return lim, off


def parse_bool(value: str | None, name: str) -> bool:
    if value is None:
        return False
    if value in ("true", "false"):
        return value == "true"
    raise BadRequestData(f"{name} must be 'true' or 'false', got {value!r}")


def count_header(count: str | None, total: int) -> dict[str, str]:
    """The ``NGSILD-Results-Count`` header (6.3.13) of a query of ``total`` results when
    ``count`` is ``true``; none when it is absent or ``false``."""
    return {"NGSILD-Results-Count": str(total)} if parse_bool(count, "count") else {}


def page_links(request: Request, path: str, lim: int, off: int, got: int, total: int | None) -> str:
    """RFC 8288 prev/next links of a page (5.5.9): ``path`` under /ngsi-ld/v1 with the
    request's parameters and the other offset; next only when this page is full and (with a
    count) more follow."""
    params = dict(request.query_params)
    parts = []
    if off > 0 and lim > 0:
        params["offset"] = str(max(off - lim, 0))
        parts.append(f'</ngsi-ld/v1{path}?{urlencode(params)}>; rel="prev"')
    if got == lim and lim > 0 and (total is None or off + lim < total):
        params["offset"] = str(off + lim)
        parts.append(f'</ngsi-ld/v1{path}?{urlencode(params)}>; rel="next"')
    return ", ".join(parts)
