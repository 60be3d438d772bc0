"""Content negotiation and JSON-LD context selection (CIM 009 6.3.4 - 6.3.6).

- Request bodies are ``application/json`` (context from the ``Link`` header, ``@context`` in
  the body is an error) or ``application/ld+json`` (``@context`` in the body, mandatory);
  PATCH also takes ``application/merge-patch+json``.  Anything else is 415.
- Responses are ``application/json`` with a ``Link`` header naming the context, or
  ``application/ld+json`` with ``@context`` in the body.  Anything else acceptable is 406.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
from fastapi import Request
from fastapi.responses import Response

from city_platform.errors import (
    BadRequestData,
    NotAcceptable,
    UnsupportedMediaType,
)
from city_platform.ldcontext import CORE_CONTEXT_URL
from city_platform.limits import header_number, loads_json

JSON = "application/json"
JSON_LD = "application/ld+json"
MERGE_PATCH = "application/merge-patch+json"
GEO_JSON = "application/geo+json"
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
MAX_BODY = 8 * 1024 * 1024

# [^<>]: a target never holds '<', and with [^>] a header of many '<' took quadratic time.
_LINK = re.compile(r"<([^<>]*)>\s*((?:;\s*[^;,]+)*)")


def context_from_link(header: str | None) -> str | None:
    """The context URL of an RFC 8288 Link header with rel=json-ld#context, if any."""
    if not header:
        return None
    for match in _LINK.finditer(header):
        params = match.group(2).replace(" ", "")
        if f'rel="{CONTEXT_REL}"' in params or f"rel={CONTEXT_REL}" in params:
            return match.group(1)
    return None


def _media_types(header: str) -> list[tuple[str, float]]:
    """(media range, weight) pairs of an Accept header.  A ``q`` that is not a number keeps the
    default weight 1: RFC 9110 12.4.2 gives no rule for it, so it neither wins nor loses."""
    out = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        media = fields[0].lower()
        q = 1.0
        for f in fields[1:]:
            if f[:2].lower() == "q=":
                try:
                    q = float(f[2:])
                except ValueError:
                    q = 1.0
        if media:
            out.append((media, q))
    return out


def _weight(ranges: list[tuple[str, float]], media: str) -> float:
    """RFC 9110 12.5.1: a media type takes the weight of the MOST SPECIFIC range matching it
    (``type/subtype`` over ``type/*`` over ``*/*``); no matching range means not acceptable."""
    kind = media.split("/", maxsplit=1)[0]
    best_rank, weight = -1, 0.0
    for rng, q in ranges:
        rank = 2 if rng == media else 1 if rng == f"{kind}/*" else 0 if rng == "*/*" else -1
        if rank > best_rank:
            best_rank, weight = rank, q
    return weight


def choose_response_type(accept: str | None, *, geo: bool = False) -> str:
    """Pick JSON or JSON-LD (or GeoJSON where offered) from an Accept header, else 406.

    CIM 009 6.3.4: the options are, in this order, application/json, application/ld+json,
    application/geo+json; when the header expands to more than one, the first of the list is
    selected unless the HTTP rules (the ``q`` weights) amend it.  So the highest weight wins
    and a tie goes to the earlier option, whatever order the client wrote (ETSI 045_02-045_04).
    """
    if not accept:
        return JSON
    offered = [JSON, JSON_LD, *([GEO_JSON] if geo else [])]
    ranges = _media_types(accept)
    best, best_q = None, 0.0
    for media in offered:  # list order: a later option needs a strictly higher weight
        q = _weight(ranges, media)
        if q > best_q:
            best, best_q = media, q
    if best is None:
        raise NotAcceptable(
            f"none of the media types in Accept {accept!r} can be produced; "
            f"offered: {', '.join(offered)}"
        )
    return best


async def read_body(
    request: Request, *, patch: bool = False, context_required: bool = True
) -> tuple[Any, Any]:
    """The parsed JSON body and the @context it names (Link header or inline).

    ``context_required=False``: a body with no term to expand (the array of entity ids of a
    batch delete, CIM 009 5.6.10 / 6.17.3.1) may come as application/ld+json without one."""
    raw_type = request.headers.get("content-type", "")
    media = raw_type.split(";")[0].strip().lower()
    allowed = (JSON, JSON_LD, MERGE_PATCH) if patch else (JSON, JSON_LD)
    if media not in allowed:
        raise UnsupportedMediaType(
            f"Content-Type {raw_type or '(none)'!r} is not supported; use {' or '.join(allowed)}"
        )
    raw = await read_limited(request, MAX_BODY, "request body")
    body = loads_json(raw, "request body")  # within the nesting limit, city_platform/limits.py
    # Each check walks the whole document (a third of a batch upsert's parsing time): skip it
    # when the raw bytes cannot hold the keyword.  A \u escape could spell one ("\u0040id"),
    # so any escape takes the walk.
    escaped = b"\\u" in raw
    if escaped or b'"@context"' in raw:
        _check_no_embedded_context(body)
    if escaped or b'"@id"' in raw or b'"@type"' in raw:
        _alias_keywords(body)
    if media == JSON_LD:
        # 6.3.5: with application/ld+json the @context is in the body; a JSON-LD Link header
        # beside it is BadRequestData (ETSI 001_09_01)
        if context_from_link(request.headers.get("link")) is not None:
            raise BadRequestData(
                "an application/ld+json request carries its @context in the body, "
                "not in a Link header (6.3.5)"
            )
        context = _inline_context(body)
        if context is None and context_required:
            raise BadRequestData("an application/ld+json body must carry @context")
        return body, context
    if _has_inline_context(body):
        raise BadRequestData(
            "@context in an application/json body: send it in a Link header "
            "or use Content-Type application/ld+json"
        )
    return body, context_from_link(request.headers.get("link"))


# Members whose content is data, not NGSI-LD structure: JSON-LD keywords there stay as they are
# (a typed value {"@type": ..., "@value": ...}, a JsonProperty's native JSON).
_DATA_MEMBERS = frozenset(
    {"value", "object", "json", "languageMap", "vocab", "valueList", "objectList", "@context"}
)


def _alias_keywords(body: Any) -> None:
    """CIM 009 4.4: the core @context maps ``id`` to ``@id`` and ``type`` to ``@type``, so a
    request may use ``@id``/``@type`` instead: they are read as ``id``/``type`` on the top-level
    document (each entity of a batch) and on its Attributes and sub-Attributes."""
    docs = body if isinstance(body, list) else [body]
    stack: list[Any] = []
    for doc in docs:
        if isinstance(doc, dict):
            _rename(doc, "@id", "id")
            _rename(doc, "@type", "type")
            stack.extend(v for k, v in doc.items() if k not in _DATA_MEMBERS)
    while stack:
        value = stack.pop()
        if isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, dict):
            _rename(value, "@type", "type")
            stack.extend(v for k, v in value.items() if k not in _DATA_MEMBERS)


def _rename(obj: dict[str, Any], keyword: str, alias: str) -> None:
    if keyword in obj and alias not in obj:
        obj[alias] = obj.pop(keyword)


def _check_no_embedded_context(body: Any) -> None:
    """CIM 009 5.5.7: a user @context may only be at the top level of an NGSI-LD document (of
    each entity of a batch), never embedded into an Attribute: BadRequestData.  The ``json``
    member of a JsonProperty is native JSON, not JSON-LD, and is not looked into."""
    stack: list[tuple[Any, str]] = []
    for doc in body if isinstance(body, list) else [body]:
        if isinstance(doc, dict):
            stack.extend((v, k) for k, v in doc.items() if k != "@context")
    while stack:
        value, where = stack.pop()
        if isinstance(value, dict):
            if "@context" in value:
                raise BadRequestData(
                    f"@context embedded in {where!r}: a user @context is only allowed at the "
                    "top level of the document (CIM 009 5.5.7)"
                )
            stack.extend((v, f"{where}.{k}") for k, v in value.items() if k != "json")
        elif isinstance(value, list):
            stack.extend((v, where) for v in value)


async def read_limited(request: Request, limit: int, what: str) -> bytes:
    """The request body, refused with 400 BadRequestData once it passes ``limit`` bytes: a
    Content-Length over it is refused before reading, and a chunked body is read as it arrives,
    so a huge or endless body is never buffered whole."""
    declared = header_number(request.headers.get("content-length"))
    if declared is not None and declared > limit:
        raise BadRequestData(f"{what} larger than {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequestData(f"{what} larger than {limit} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    request._body = raw  # what Request.body() returns from now on (the stream is consumed)
    return raw


def _has_inline_context(body: Any) -> bool:
    if isinstance(body, dict):
        return "@context" in body
    if isinstance(body, list):
        return any(isinstance(i, dict) and "@context" in i for i in body)
    return False


def _inline_context(body: Any) -> Any:
    if isinstance(body, dict):
        return body.get("@context")
    if isinstance(body, list):
        contexts = [i.get("@context") for i in body if isinstance(i, dict)]
        if contexts and all(c is not None for c in contexts):
            return contexts[0]
    return None


def render(
    body: Any,
    *,
    media: str,
    context: Any,
    status: int = 200,
    headers: dict[str, str] | None = None,
) -> Response:
    """Serialize an answer for the negotiated media type, attaching the context (6.3.6)."""
    out_headers = dict(headers or {})
    if media == JSON_LD:
        ctx_value = context if context is not None else CORE_CONTEXT_URL
        if isinstance(body, dict):
            body = {**body, "@context": ctx_value}
        elif isinstance(body, list):
            body = [{**i, "@context": ctx_value} if isinstance(i, dict) else i for i in body]
    else:
        url = context if isinstance(context, str) else CORE_CONTEXT_URL
        link = f'<{url}>; rel="{CONTEXT_REL}"; type="{JSON_LD}"'
        out_headers["Link"] = f"{out_headers['Link']}, {link}" if "Link" in out_headers else link
    return Response(orjson.dumps(body), status_code=status, media_type=media, headers=out_headers)
