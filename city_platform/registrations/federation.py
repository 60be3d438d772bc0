"""Distributed read operations (CIM 009 4.3.6): Query Entities and Retrieve Entity also ask the
Context Sources registered for what is asked, and merge their answers with the local one.

* Which sources: the tenant's registrations that are not expired, offer the operation
  (``federationOps``, ``retrieveOps``, ``redirectionOps`` or the operation itself, 4.3.6.3) and
  whose information can hold the entities asked for (5.12); ``csf`` (4.3.6.3, 6.3.18 Table
  6.4.3.2-1) filters them on their Context Source Properties.  ``local=true`` (and ``type=*``)
  asks the local store only.
* How: ``GET {endpoint}/ngsi-ld/v1/entities[/{id}]`` with the request's parameters (less
  ``local`` and ``csf``), its ``Link`` header, the registration's ``tenant`` as NGSILD-Tenant and
  ``contextSourceInfo`` as headers, and ``Via`` naming this broker (6.3.18): a request whose
  ``Via`` already names it is not forwarded again, which breaks loops (4.3.6.4).  A POST
  /entityOperations/query is forwarded as the same POST with the same Query body.
* Merging (4.3.6.2): an entity found in several places is one entity whose attributes are the
  union; on a clash the local attribute wins over an ``inclusive`` or ``auxiliary`` source, an
  ``exclusive`` or ``redirect`` source's wins over the local one.
* A source that fails or times out does not fail the request: the answer has what the others
  gave, and an ``NGSILD-Warning`` header (6.3.17) per failed source.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import httpx
import orjson
from fastapi import Request
from fastapi.responses import Response

from city_platform.api.deps import link_source
from city_platform.api.negotiation import render
from city_platform.broker import ContextBroker
from city_platform.errors import ResourceNotFound
from city_platform.ldcontext import Context
from city_platform.limits import header_number
from city_platform.registrations.manager import RegistrationManager
from city_platform.registrations.model import POST_QUERY_OPS, QUERY_OPS, RETRIEVE_OPS, Selection
from city_platform.search import split_list
from city_platform.storage.base import Entity

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 5.0
MAX_ANSWER = 16 * 1024 * 1024  # bytes of one source's answer
_NOT_FORWARDED = frozenset({"local", "csf"})
_lock = asyncio.Lock()


async def get_manager(request: Request) -> RegistrationManager:
    """The app's registration manager, made and loaded from the storage on first use."""
    state = request.app.state
    manager: RegistrationManager | None = getattr(state, "registrations", None)
    if manager is None:
        async with _lock:
            manager = getattr(state, "registrations", None)
            if manager is None:
                manager = RegistrationManager(state.broker.storage, state.resolver)
                await manager.load()
                state.registrations = manager
    return manager


# 6.3.17 Table 6.3.17-1 (warn-code of RFC 7234 5.5): no answer in time, an error answer, an
# answer that is not a valid NGSI-LD payload (not incorporated).
NO_ANSWER, ERROR_ANSWER, INVALID_ANSWER = 199, 299, 111


def _warning(manager: RegistrationManager, reg: dict[str, Any], code: int, text: str) -> str:
    """One NGSILD-Warning value: ``code agent "text"``, the agent being this broker (its
    ``Via`` pseudonym) and the text naming the registration."""
    clean = re.sub(r'[^\x20-\x7e]|"|\\', "'", f"{reg['id']}: {text}")[:300]
    return f'{code} {manager.broker_id} "{clean}"'


def _headers(
    request: Request, manager: RegistrationManager, reg: dict[str, Any], content: bytes | None
) -> dict[str, str]:
    headers = {"Accept": "application/json"}
    if content is not None:
        headers["Content-Type"] = request.headers.get("content-type", "application/json")
    for item in reg.get("contextSourceInfo", ()):
        headers[item["key"]] = item["value"]
    link = request.headers.get("link")
    if link:
        headers["Link"] = link
    if reg.get("tenant"):
        headers["NGSILD-Tenant"] = reg["tenant"]
    via = request.headers.get("via")
    own = f"1.1 {manager.broker_id}"
    headers["Via"] = f"{via}, {own}" if via else own
    return headers


def _looped(request: Request, manager: RegistrationManager) -> bool:
    return manager.broker_id in (request.headers.get("via") or "")


def _params(request: Request) -> list[tuple[str, str]]:
    return [(k, v) for k, v in request.query_params.multi_items() if k not in _NOT_FORWARDED]


_SELECTION = frozenset({"type", "id", "idPattern", "attrs"})


def _proxied_params(
    params: list[tuple[str, str]],
    reg: dict[str, Any],
    ctx: Context,
    *,
    query: bool,
) -> list[tuple[str, str]]:
    """The parameters of a read forwarded to an exclusive or redirect registration (4.3.6.3):
    it is asked for what it is registered for only, the registration's entity types and ids
    (queries) and Attribute names (within the ``attrs`` asked for); the other parameters are
    passed on.  Inclusive and auxiliary registrations get the request's parameters as they are."""
    if reg.get("mode") not in ("exclusive", "redirect"):
        return params
    given = dict(params)
    asked = {ctx.expand(a) for a in split_list(given.get("attrs")) or ()}
    types: list[str] = []
    ids: list[str] = []
    names: list[str] = []
    for info in reg["information"]:
        for e in info.get("entities", ()):
            types.append(ctx.compact(e["type"]))
            if "id" in e:
                ids.append(e["id"])
        for n in (*info.get("propertyNames", ()), *info.get("relationshipNames", ())):
            if not asked or n in asked:
                names.append(ctx.compact(n))
    out: list[tuple[str, str]] = []
    if query:
        if types:
            out.append(("type", ",".join(dict.fromkeys(types))))
        if ids:
            out.append(("id", ",".join(dict.fromkeys(ids))))
        elif "idPattern" in given:
            out.append(("idPattern", given["idPattern"]))
    if names:
        out.append(("attrs", ",".join(dict.fromkeys(names))))
    elif asked:
        out.append(("attrs", given["attrs"]))
    keep = _SELECTION if query else frozenset({"attrs"})
    return out + [(k, v) for k, v in params if k not in keep]


class _TooLarge(Exception):
    pass


class _Answer(NamedTuple):
    body: Any
    warning: str | None
    results: int | None = None  # the source's NGSILD-Results-Count


async def _fetch(
    url: str,
    params: list[tuple[str, str]],
    headers: dict[str, str],
    read_timeout: float,
    content: bytes | None,
) -> tuple[int, bytes, str | None]:
    """GET ``url`` (POST ``content`` when given): the status, at most :data:`MAX_ANSWER`
    bytes of body, and the NGSILD-Results-Count header."""
    method = "GET" if content is None else "POST"
    query = urlencode(params)
    async with (
        httpx.AsyncClient(timeout=read_timeout) as client,
        client.stream(method, url, params=query, headers=headers, content=content) as answer,
    ):
        chunks, size = [], 0
        async for chunk in answer.aiter_bytes():
            size += len(chunk)
            if size > MAX_ANSWER:
                raise _TooLarge(f"answer larger than {MAX_ANSWER} bytes")
            chunks.append(chunk)
        count = answer.headers.get("NGSILD-Results-Count")
        return answer.status_code, b"".join(chunks), count


async def _ask(
    request: Request,
    manager: RegistrationManager,
    tenant: str,
    reg: dict[str, Any],
    path: str,
    params: list[tuple[str, str]],
    content: bytes | None = None,
) -> _Answer:
    """One source's JSON answer (None when it has nothing), a warning when it failed, and the
    count it gave."""
    timeout_ms = (reg.get("management") or {}).get("timeout")
    timeout = float(timeout_ms) / 1000 if timeout_ms else DEFAULT_TIMEOUT_S
    url = f"{reg['endpoint']}/ngsi-ld/v1{path}"
    if not manager.resolver.allow_list.permits(url):
        # Registered before --allow-endpoint was set or narrowed: never contacted (SSRF).
        await manager.record(tenant, reg["id"], ok=False)
        reason = "the registration endpoint is outside the --allow-endpoint list"
        return _Answer(None, _warning(manager, reg, ERROR_ANSWER, reason))
    try:
        # The whole exchange is bounded, not only each read: a source trickling bytes
        # cannot hold the request (6.3.17: it counts as not answering).
        status, raw, count = await asyncio.wait_for(
            _fetch(url, params, _headers(request, manager, reg, content), timeout, content),
            timeout * 2,
        )
    except (httpx.HTTPError, TimeoutError, _TooLarge, ValueError) as exc:
        await manager.record(tenant, reg["id"], ok=False)
        log.info("context source %s (%s) did not answer: %r", reg["id"], url, exc)
        if isinstance(exc, _TooLarge):
            return _Answer(None, _warning(manager, reg, INVALID_ANSWER, str(exc)))
        reason = f"no response from the registration endpoint in time ({type(exc).__name__})"
        return _Answer(None, _warning(manager, reg, NO_ANSWER, reason))
    if status == 404:
        await manager.record(tenant, reg["id"], ok=True)
        return _Answer(None, None)
    if status != 200:
        await manager.record(tenant, reg["id"], ok=False)
        reason = f"the registration endpoint answered HTTP {status}"
        return _Answer(None, _warning(manager, reg, ERROR_ANSWER, reason))
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        await manager.record(tenant, reg["id"], ok=False)
        return _Answer(None, _warning(manager, reg, INVALID_ANSWER, "the answer is not JSON"))
    await manager.record(tenant, reg["id"], ok=True)
    total = header_number(count)  # the source's NGSILD-Results-Count, if it is a number
    return _Answer(body, None, total)


def _merge_one(base: dict[str, Any], other: dict[str, Any], *, other_wins: bool) -> dict[str, Any]:
    out = dict(base)
    types = [*_as_list(base.get("type")), *_as_list(other.get("type"))]
    unique = list(dict.fromkeys(t for t in types if isinstance(t, str)))
    if unique:
        out["type"] = unique[0] if len(unique) == 1 else unique
    for key, value in other.items():
        if key in ("id", "type", "@context"):
            continue
        if key not in out or other_wins:
            out[key] = value
    return out


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _wins(reg: dict[str, Any]) -> bool:
    return reg.get("mode") in ("exclusive", "redirect")


def _selection(request: Request, ctx: Context, **kwargs: Any) -> Selection:
    return Selection.build(ctx, csf=request.query_params.get("csf"), **kwargs)


def _local_only(request: Request, types: str | None) -> bool:
    star = types is not None and types.strip() == "*"
    return request.query_params.get("local") == "true" or star


async def _manager_to_ask(
    request: Request, tenant: str, types: str | None
) -> RegistrationManager | None:
    """The registrations of ``tenant`` to forward the read to; None when it stays local."""
    if _local_only(request, types):
        return None
    manager = await get_manager(request)
    if not manager.has_registrations(tenant):  # the common case: nothing to forward to
        return None
    return manager


async def federate_query(
    request: Request,
    tenant: str,
    ctx: Context,
    body: list[dict[str, Any]],
    *,
    types: str | None,
    ids: str | None,
    id_pattern: str | None,
    attrs: str | None,
    limit: int,
    total: int | None = None,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Query Entities over the local answer and the sources, with ``NGSILD-Results-Count``
    (6.3.13) when the local ``total`` is given: it adds what the sources count."""
    counted: list[int] = []
    out, headers = await _federate_query(
        request, tenant, ctx, body, counted, types=types, ids=ids, id_pattern=id_pattern,
        attrs=attrs, limit=limit,
    )  # fmt: skip
    if total is not None:
        headers["NGSILD-Results-Count"] = str(total + sum(counted))
    return out, headers


async def _federate_query(
    request: Request,
    tenant: str,
    ctx: Context,
    body: list[dict[str, Any]],
    counted: list[int],
    *,
    types: str | None,
    ids: str | None,
    id_pattern: str | None,
    attrs: str | None,
    limit: int,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Query Entities (5.7.2) over the local answer ``body`` and the matching sources; what
    each source adds to the count is appended to ``counted``.

    GET /entities is forwarded as such; POST /entityOperations/query (6.23.3.1) as the same
    POST with the same Query body, to registrations offering it (queryBatch, 4.3.6.3)."""
    posted = request.method == "POST"
    manager = await _manager_to_ask(request, tenant, types)
    if manager is None:
        return body, {}
    selection = _selection(
        request,
        ctx,
        types=types,
        ids=split_list(ids),
        id_pattern=id_pattern,
        attrs=split_list(attrs),
    )
    ops = POST_QUERY_OPS if posted else QUERY_OPS
    regs = manager.for_forwarding(tenant, selection, ops, ctx)
    if not regs or _looped(request, manager):
        return body, {}
    params = _params(request)
    path, content = (
        ("/entityOperations/query", await request.body()) if posted else ("/entities", None)
    )
    answers = await asyncio.gather(
        *(
            _ask(
                request,
                manager,
                tenant,
                reg,
                path,
                params if posted else _proxied_params(params, reg, ctx, query=True),
                content,
            )
            for reg in regs
        )
    )
    merged: dict[str, dict[str, Any]] = {e["id"]: e for e in body if isinstance(e.get("id"), str)}
    order = list(merged)
    warnings = []
    for reg, (answer, warning, count) in zip(regs, answers, strict=True):
        if warning:
            warnings.append(warning)
        if answer is None:
            continue
        if not isinstance(answer, list):
            warnings.append(
                _warning(manager, reg, INVALID_ANSWER, "the answer is not an array of entities")
            )
            continue
        new = seen = 0
        for entity in answer:
            if not isinstance(entity, dict) or not isinstance(entity.get("id"), str):
                continue
            known = merged.get(entity["id"])
            if known is None:
                merged[entity["id"]] = {k: v for k, v in entity.items() if k != "@context"}
                order.append(entity["id"])
                new += 1
            else:
                merged[entity["id"]] = _merge_one(known, entity, other_wins=_wins(reg))
                seen += 1
        # The source's own count, less the entities it shares with what is counted already
        # (as far as this page shows them); its new entities when it gave no count.
        counted.append(new if count is None else max(count - seen, 0))
    out = [merged[i] for i in order][:limit] if limit > 0 else []
    headers = {"NGSILD-Warning": ", ".join(warnings)} if warnings else {}
    return out, headers


async def federate_retrieve(
    request: Request,
    tenant: str,
    ctx: Context,
    entity_id: str,
    body: dict[str, Any] | None,
    local_types: list[str] | None,
) -> tuple[dict[str, Any] | None, dict[str, str]]:
    """Retrieve Entity (5.7.1) from the local answer ``body`` (None when not found locally)
    and the sources registered for the entity."""
    manager = await _manager_to_ask(request, tenant, None)
    if manager is None:
        return body, {}
    selection = _selection(
        request, ctx, ids=[entity_id], attrs=split_list(request.query_params.get("attrs"))
    )
    if local_types is not None:
        wanted = frozenset(local_types)
        selection = Selection(
            type_ok=wanted.__contains__,
            ids=selection.ids,
            attrs=selection.attrs,
            csf=selection.csf,
        )
    regs = manager.for_forwarding(tenant, selection, RETRIEVE_OPS, ctx)
    if not regs or _looped(request, manager):
        return body, {}
    params = _params(request)
    path = f"/entities/{quote(entity_id, safe=':')}"
    answers = await asyncio.gather(
        *(
            _ask(
                request, manager, tenant, reg, path, _proxied_params(params, reg, ctx, query=False)
            )
            for reg in regs
        )
    )
    warnings = []
    for reg, (answer, warning, _) in zip(regs, answers, strict=True):
        if warning:
            warnings.append(warning)
        if answer is None:
            continue
        if not isinstance(answer, dict) or answer.get("id") != entity_id:
            warnings.append(
                _warning(manager, reg, INVALID_ANSWER, f"the answer is not entity {entity_id}")
            )
            continue
        remote = {k: v for k, v in answer.items() if k != "@context"}
        body = remote if body is None else _merge_one(body, remote, other_wins=_wins(reg))
    headers = {"NGSILD-Warning": ", ".join(warnings)} if warnings else {}
    return body, headers


async def local_or_none(broker: ContextBroker, tenant: str, entity_id: str) -> Entity | None:
    """The local entity, or None when it is not here (a registered source may have it)."""
    try:
        return await broker.get(tenant, entity_id)
    except ResourceNotFound:
        return None


async def remote_entity(
    request: Request, tenant: str, ctx: Context, entity_id: str, accept: str
) -> Response:
    """Retrieve Entity of an entity not stored here: the registered sources' answer (4.3.6),
    else 404 as for a local miss (5.7.1.4)."""
    body, headers = await federate_retrieve(request, tenant, ctx, entity_id, None, None)
    if body is None:  # 404, with the warnings of the sources that failed (6.3.17)
        error = ResourceNotFound(f"entity {entity_id!r} not found")
        return Response(
            orjson.dumps(error.problem()),
            status_code=error.status,
            media_type="application/json",
            headers=headers,
        )
    return render(body, media=accept, context=link_source(request), headers=headers)
