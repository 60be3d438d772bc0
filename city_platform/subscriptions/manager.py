"""Matching changes against subscriptions and delivering notifications (CIM 009 5.8, 5.11).

The broker calls :meth:`SubscriptionManager.on_changes` synchronously after each commit; it
only appends to per-subscription bounded queues and wakes a worker, so a slow or dead endpoint
never slows ingestion.  Each subscription has one worker task that drains its queue into
notifications (several entities per notification when changes pile up), honours
``throttling`` and records the delivery status.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from city_platform import entities as ent
from city_platform.broker import Change, ContextBroker
from city_platform.errors import AlreadyExists, PlatformError, ResourceNotFound
from city_platform.ldcontext import Context, ContextResolver
from city_platform.query.regex import matches
from city_platform.search import EntitySearch
from city_platform.subscriptions.model import (
    new_subscription,
    render_subscription,
    search_for,
    status_of,
    update_subscription,
)
from city_platform.subscriptions.notifier import Notifier, notification_body

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000  # pending entity changes per subscription before the oldest are dropped
BATCH_MAX = 100  # entities per notification


@dataclass
class _Pending:
    entity: ent.Entity
    deleted: bool
    at: str


@dataclass
class _Live:
    tenant: str
    stored: dict[str, Any]
    ctx: Context
    search: EntitySearch | None
    pending: deque[_Pending] = field(default_factory=lambda: deque(maxlen=QUEUE_MAX))
    wakeup: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None
    last_sent: float = 0.0
    dropped: int = 0


def _selects(selector: dict[str, str], entity: ent.Entity) -> bool:
    if selector["type"] not in entity["type"]:
        return False
    if "id" in selector and selector["id"] != entity["id"]:
        return False
    return not ("idPattern" in selector and not matches(selector["idPattern"], entity["id"]))


def wants(stored: dict[str, Any], search: EntitySearch | None, change: Change, now: str) -> bool:
    """Whether ``change`` triggers the subscription (5.11, notificationTrigger)."""
    if status_of(stored, now) != "active":
        return False
    entity = change.entity
    selectors = stored.get("entities")
    if selectors and not any(_selects(s, entity) for s in selectors):
        return False
    triggers = set(stored["notificationTrigger"])
    if change.deleted:
        return "entityDeleted" in triggers
    watched = stored.get("watchedAttributes")
    relevant = change.attrs if watched is None else change.attrs & set(watched)
    if change.previous is None:
        hit = "entityCreated" in triggers and (watched is None or bool(relevant))
        hit = hit or ("attributeCreated" in triggers and bool(relevant))
    else:
        before = change.previous["attrs"]
        created = {a for a in relevant if a not in before}
        hit = (
            (bool(created) and "attributeCreated" in triggers)
            or (bool(relevant - created) and "attributeUpdated" in triggers)
            or (bool(relevant) and "entityUpdated" in triggers)
        )
    return hit and (search is None or search.matches(entity))


class SubscriptionManager:
    """Owns the subscriptions of every tenant while the platform runs."""

    def __init__(
        self,
        broker: ContextBroker,
        resolver: ContextResolver,
        *,
        notifier: Notifier | None = None,
    ) -> None:
        self.broker = broker
        self.resolver = resolver
        self._notifier = notifier
        self._live: dict[tuple[str, str], _Live] = {}

    async def __aenter__(self) -> SubscriptionManager:
        self._notifier = self._notifier or Notifier()
        for tenant, stored in await self.broker.storage.list_subscriptions(None):
            try:
                await self._activate(tenant, stored)
            except PlatformError as exc:
                log.warning("subscription %s cannot be loaded: %s", stored.get("id"), exc.detail)
        self.broker.add_listener(self.on_changes)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for live in self._live.values():
            if live.task is not None:
                live.task.cancel()
        for live in self._live.values():
            if live.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await live.task
        self._live.clear()
        if self._notifier is not None:
            await self._notifier.aclose()

    # -- CRUD (5.8.1-5.8.5) -------------------------------------------------------------------

    async def create(self, tenant: str, doc: object, ctx: Context, context_source: Any) -> str:
        stored = new_subscription(doc, ctx, context_source=context_source, now=ent.now_iso())
        key = (tenant, stored["id"])
        if key in self._live:
            raise AlreadyExists(f"subscription {stored['id']!r} already exists")
        await self.broker.storage.put_subscription(tenant, stored["id"], stored)
        await self._activate(tenant, stored)
        return str(stored["id"])

    def _get(self, tenant: str, sub_id: str) -> _Live:
        live = self._live.get((tenant, sub_id))
        if live is None:
            raise ResourceNotFound(f"subscription {sub_id!r} not found")
        return live

    def render(self, tenant: str, sub_id: str, ctx: Context, *, sys_attrs: bool = False) -> Any:
        live = self._get(tenant, sub_id)
        return render_subscription(live.stored, ctx, now=ent.now_iso(), sys_attrs=sys_attrs)

    def all(self, tenant: str, ctx: Context, *, sys_attrs: bool = False) -> list[Any]:
        now = ent.now_iso()
        return [
            render_subscription(live.stored, ctx, now=now, sys_attrs=sys_attrs)
            for (t, _), live in self._live.items()
            if t == tenant
        ]

    async def update(self, tenant: str, sub_id: str, fragment: object, ctx: Context) -> None:
        live = self._get(tenant, sub_id)
        stored = update_subscription(live.stored, fragment, ctx, now=ent.now_iso())
        await self.broker.storage.put_subscription(tenant, sub_id, stored)
        live.stored = stored
        live.ctx = await self.resolver.resolve(stored.get("jsonldContext"))
        live.search = search_for(stored, live.ctx)

    async def delete(self, tenant: str, sub_id: str) -> None:
        live = self._get(tenant, sub_id)
        del self._live[(tenant, sub_id)]
        if live.task is not None:
            live.task.cancel()
        await self.broker.storage.delete_subscription(tenant, sub_id)

    # -- matching and delivery ----------------------------------------------------------------

    async def _activate(self, tenant: str, stored: dict[str, Any]) -> None:
        ctx = await self.resolver.resolve(stored.get("jsonldContext"))
        live = _Live(tenant=tenant, stored=stored, ctx=ctx, search=search_for(stored, ctx))
        live.task = asyncio.create_task(self._worker(live), name=f"subscription {stored['id']}")
        self._live[(tenant, stored["id"])] = live

    def on_changes(self, changes: list[Change]) -> None:
        """Broker listener: enqueue only, never wait."""
        if not self._live:
            return
        now = ent.now_iso()
        for live in self._live.values():
            for change in changes:
                if change.tenant != live.tenant:
                    continue
                if not wants(live.stored, live.search, change, now):
                    continue
                if len(live.pending) == live.pending.maxlen:
                    live.dropped += 1
                    if live.dropped == 1:
                        log.warning(
                            "subscription %s: endpoint too slow, dropping oldest changes",
                            live.stored["id"],
                        )
                live.pending.append(_Pending(change.entity, change.deleted, now))
                live.wakeup.set()

    async def _worker(self, live: _Live) -> None:
        while True:
            await live.wakeup.wait()
            live.wakeup.clear()
            while live.pending:
                throttling = float(live.stored.get("throttling") or 0)
                wait = live.last_sent + throttling - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)  # changes meanwhile join the next notification
                batch: dict[str, _Pending] = {}
                while live.pending and len(batch) < BATCH_MAX:
                    item = live.pending.popleft()
                    batch[item.entity["id"]] = item  # the newest state of each entity wins
                live.last_sent = time.monotonic()
                try:
                    await self._deliver(live, list(batch.values()))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("subscription %s: delivery failed", live.stored["id"])

    def _data(self, live: _Live, items: list[_Pending]) -> list[dict[str, Any]]:
        note = live.stored["notification"]
        attrs = note.get("attributes")
        out = []
        for item in items:
            if item.deleted:
                types = [live.ctx.compact(t) for t in item.entity["type"]]
                out.append(
                    {
                        "id": item.entity["id"],
                        "type": types[0] if len(types) == 1 else types,
                        "deletedAt": item.at,
                    }
                )
                continue
            out.append(
                ent.render_entity(
                    item.entity,
                    live.ctx,
                    attrs=set(attrs) if attrs else None,
                    mode=note.get("format", "normalized"),
                    sys_attrs=bool(note.get("sysAttrs")),
                )
            )
        return out

    async def _deliver(self, live: _Live, items: list[_Pending]) -> None:
        assert self._notifier is not None
        stored = live.stored
        note = stored["notification"]
        now = ent.now_iso()
        body = notification_body(stored["id"], self._data(live, items), now)
        outcome = await self._notifier.send(
            note["endpoint"], body, context=stored.get("jsonldContext"), tenant=live.tenant
        )
        done = ent.now_iso()
        note = live.stored["notification"] = dict(live.stored["notification"])
        note["timesSent"] = int(note.get("timesSent", 0)) + 1
        note["lastNotification"] = now
        if outcome.ok:
            note["status"] = "ok"
            note["lastSuccess"] = done
        else:
            note["status"] = "failed"
            note["lastFailure"] = done
            note["timesFailed"] = int(note.get("timesFailed", 0)) + 1
        if (live.tenant, stored["id"]) in self._live:
            await self.broker.storage.put_subscription(live.tenant, stored["id"], live.stored)
