"""Matching changes against subscriptions and delivering notifications (CIM 009 5.8, 5.11).

The broker calls :meth:`SubscriptionManager.on_changes` synchronously after each commit; it
only appends to per-subscription bounded queues and wakes a worker, so a slow or dead endpoint
never slows ingestion.  Each subscription has one worker task that drains its queue into
notifications (several entities per notification when changes pile up), honours
``throttling`` and records the delivery status.

Periodic subscriptions (``timeInterval``, CIM 009 5.2.12) do not react to changes: their worker
wakes every ``timeInterval`` seconds and notifies the entities that match at that moment.
Change-driven subscriptions notify per ``notificationTrigger`` (5.2.12): a deleted Attribute is
notified with the NGSI-LD Null (``urn:ngsi-ld:null``, 4.5.x / ETSI 046_22), a deleted Entity as
``id``, ``type`` and ``deletedAt``; ``showChanges`` (5.2.14) adds the previous value of an updated
Attribute (``previousValue``, ``previousObject``, ...).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from city_platform import entities as ent
from city_platform.api.negotiation import GEO_JSON
from city_platform.api.representation import (
    Representation,
    apply_lang,
    context_value,
    feature,
    geometry_of,
    parse_join,
    parse_lang,
)
from city_platform.broker import Change, ContextBroker
from city_platform.errors import AlreadyExists, PlatformError, ResourceNotFound
from city_platform.ldcontext import Context, ContextResolver
from city_platform.query.projection import only_datasets, parse_dataset_ids
from city_platform.query.regex import matches
from city_platform.search import EntitySearch
from city_platform.storage.base import EntityFilter
from city_platform.subscriptions.model import (
    new_subscription,
    projection_of,
    render_subscription,
    search_for,
    status_of,
    update_subscription,
)
from city_platform.subscriptions.notifier import Notifier, Outcome, notification_body

log = logging.getLogger(__name__)

QUEUE_MAX = 10_000  # pending entity changes per subscription before the oldest are dropped
BATCH_MAX = 100  # entities per notification
PERIODIC_MAX = 10_000  # entities a periodic notification round sends at most
NGSI_NULL = "urn:ngsi-ld:null"  # CIM 009 4.5.x: the value of a deleted Attribute
# showChanges (5.2.14): the member that carries the previous value, per value member.
PREVIOUS_KEY = {
    "value": "previousValue",
    "object": "previousObject",
    "languageMap": "previousLanguageMap",
    "valueList": "previousValueList",
    "objectList": "previousObjectList",
    "json": "previousJson",
    "vocab": "previousVocab",
}


@dataclass
class _Pending:
    entity: ent.Entity
    deleted: bool  # notified as a deleted Entity (id, type, deletedAt)
    at: str
    previous: ent.Entity | None = None
    removed: frozenset[str] = frozenset()  # attribute IRIs notified with the NGSI-LD Null
    updated: frozenset[str] = frozenset()  # attribute IRIs whose previous value showChanges gives


@dataclass(frozen=True)
class Trigger:
    """Why a change notifies (one of the notificationTrigger values, 5.2.12), and what of it."""

    reason: str
    removed: frozenset[str] = frozenset()
    updated: frozenset[str] = frozenset()


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
    failed_at: float | None = None  # monotonic time of the last failed notification


def _selects(selector: dict[str, str], entity: ent.Entity) -> bool:
    if selector["type"] not in entity["type"]:
        return False
    if "id" in selector and selector["id"] != entity["id"]:
        return False
    return not ("idPattern" in selector and not matches(selector["idPattern"], entity["id"]))


def triggered(
    stored: dict[str, Any], search: EntitySearch | None, change: Change, now: str
) -> Trigger | None:
    """The trigger ``change`` fires for the subscription, or None (5.11, 5.2.12).

    ``watchedAttributes`` restricts every trigger but ``entityDeleted``; ``entityCreated``
    without watchedAttributes fires for any new entity.  A deletion of an instance
    (``Change.removed``) or of a whole attribute is ``attributeDeleted``, never an update."""
    if status_of(stored, now) != "active" or "timeInterval" in stored:
        return None
    entity = change.entity
    selectors = stored.get("entities")
    if selectors and not any(_selects(s, entity) for s in selectors):
        return None
    triggers = set(stored["notificationTrigger"])
    watched = stored.get("watchedAttributes")

    def seen(names: Iterable[str]) -> frozenset[str]:
        found = frozenset(names)
        return found if watched is None else found & frozenset(watched)

    if change.deleted:
        if search is not None and not search.matches(entity):
            return None
        if "entityDeleted" in triggers:
            return Trigger("entityDeleted")
        gone = seen(entity["attrs"])
        return (
            Trigger("attributeDeleted", removed=gone)
            if "attributeDeleted" in triggers and gone
            else None
        )
    if change.previous is None:
        written = seen(change.attrs)
        if "entityCreated" in triggers and (watched is None or written):
            reason = "entityCreated"
        elif "attributeCreated" in triggers and written:
            reason = "attributeCreated"
        else:
            return None
        return Trigger(reason) if search is None or search.matches(entity) else None
    before, after = change.previous["attrs"], entity["attrs"]
    removed = seen((before.keys() - after.keys()) | change.removed)
    written = seen(change.attrs) - removed
    created = frozenset(a for a in written if a not in before)
    updated = written - created
    if removed and "attributeDeleted" in triggers:
        reason = "attributeDeleted"
    elif created and "attributeCreated" in triggers:
        reason = "attributeCreated"
    elif updated and "attributeUpdated" in triggers:
        reason = "attributeUpdated"
    elif (written or removed) and "entityUpdated" in triggers:
        reason = "entityUpdated"
    else:
        return None
    # for attributeDeleted, a q on the deleted attribute held before the deletion
    if (
        search is not None
        and not search.matches(entity)
        and (reason != "attributeDeleted" or not search.matches(change.previous))
    ):
        return None
    # entityUpdated "is equivalent to the combination attributeCreated, attributeUpdated and
    # attributeDeleted" (5.2.12): its deleted attributes are notified with the NGSI-LD Null too
    deletes = "attributeDeleted" in triggers or "entityUpdated" in triggers
    notified = removed if deletes else frozenset()
    return Trigger(reason, removed=notified, updated=updated)


def wants(stored: dict[str, Any], search: EntitySearch | None, change: Change, now: str) -> bool:
    """Whether ``change`` triggers the subscription (5.11, notificationTrigger)."""
    return triggered(stored, search, change, now) is not None


def _null_instance(
    inst: ent.Instance, mode: str, sys_attrs: bool, at: str, *, dataset: bool, show: bool
) -> Any:
    """A deleted attribute instance as notified: its value member is the NGSI-LD Null; with
    showChanges also its value before the deletion (5.2.14: "modifications and deletions")."""
    atype = inst.get("type", "Property")
    member = ent.VALUE_KEY.get(atype, "value")
    out: dict[str, Any] = {"type": atype, member: NGSI_NULL}
    if show:
        out[PREVIOUS_KEY[member]] = ent.instance_value(inst)
    if dataset and "datasetId" in inst:
        out["datasetId"] = inst["datasetId"]
    if sys_attrs:
        out["deletedAt"] = at
    if mode == "concise":
        if atype in ("Property", "GeoProperty", "Relationship"):
            del out["type"]
        if list(out) == ["value"]:
            return out["value"]
    return out


def _prefers_json(endpoint: dict[str, Any]) -> bool:
    """receiverInfo Prefer: body=json (NotificationData): no @context in a FeatureCollection."""
    for info in endpoint.get("receiverInfo", ()):
        if str(info.get("key", "")).lower() == "prefer":
            return "body=json" in str(info.get("value", "")).replace(" ", "").lower()
    return False


def _in_datasets(item: _Pending, wanted: frozenset[str | None]) -> _Pending:
    previous = only_datasets(item.previous, wanted) if item.previous is not None else None
    return replace(item, entity=only_datasets(item.entity, wanted), previous=previous)


def _in_language(item: _Pending, ranges: list[str]) -> _Pending:
    """lang (5.2.12, 4.15): the change with its LanguageProperties in one language each."""
    previous = apply_lang(item.previous, ranges) if item.previous is not None else None
    return replace(item, entity=apply_lang(item.entity, ranges), previous=previous)


def _add_deleted(
    doc: dict[str, Any],
    ctx: Context,
    iri: str,
    item: _Pending,
    old: list[ent.Instance],
    mode: str,
    sys_attrs: bool,
    show: bool,
) -> None:
    """attributeDeleted: a gone attribute is one NGSI-LD Null (ETSI 046_22_08 expects one
    even when all its instances went); deleted instances of a still present attribute are
    added to its instances with their datasetId (not in keyValues, which shows the default)."""
    now_instances = item.entity["attrs"].get(iri, [])
    kept = {i.get("datasetId") for i in now_instances}
    gone = [i for i in old if i.get("datasetId") not in kept]
    if not gone:
        return
    name = ctx.compact(iri)
    if not now_instances:
        if mode == "keyValues":
            doc[name] = NGSI_NULL
        else:
            doc[name] = _null_instance(gone[0], mode, sys_attrs, item.at, dataset=False, show=show)
    elif mode != "keyValues":
        current = doc.get(name)
        listed = current if isinstance(current, list) else [current]
        nulls = [_null_instance(i, mode, sys_attrs, item.at, dataset=True, show=show) for i in gone]
        doc[name] = [*listed, *nulls]


def _add_previous(
    doc: dict[str, Any], name: str, iri: str, item: _Pending, old: list[ent.Instance]
) -> None:
    """showChanges (5.2.14): each updated instance also carries its value before the change
    (previousValue, previousObject, previousLanguageMap, ... after its value member)."""
    if name not in doc:
        return
    before = {i.get("datasetId"): i for i in old}
    rendered = doc[name]
    listed = list(rendered) if isinstance(rendered, list) else [rendered]
    for n, inst in enumerate(item.entity["attrs"].get(iri, [])):
        if n >= len(listed):
            break
        prior = before.get(inst.get("datasetId"))
        if prior is None:
            continue
        member = ent.VALUE_KEY.get(prior.get("type", "Property"), "value")
        shown = listed[n] if isinstance(listed[n], dict) else {"value": listed[n]}  # concise
        shown[PREVIOUS_KEY[member]] = ent.instance_value(prior)
        listed[n] = shown
    doc[name] = listed if isinstance(rendered, list) else listed[0]


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
        self._refused: set[tuple[str, str]] = set()  # logged once: endpoint outside the list
        self._reloads: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> SubscriptionManager:
        self._notifier = self._notifier or Notifier()
        for tenant, stored in await self.broker.storage.list_subscriptions(None):
            try:
                await self._activate(tenant, stored)
            except PlatformError as exc:
                log.warning("subscription %s cannot be loaded: %s", stored.get("id"), exc.detail)
        self.broker.add_listener(self.on_changes)
        # Several platform processes on one database: a subscription created, changed or
        # deleted through another one is loaded here too (PostgreSQL LISTEN/NOTIFY).  Changes
        # need no such thing: each is made, and so notified, by exactly one process.
        self.broker.storage.on_subscription_change(self._changed_elsewhere)
        return self

    def _changed_elsewhere(self, tenant: str, sub_id: str) -> None:
        task = asyncio.create_task(self._reload(tenant, sub_id))
        self._reloads.add(task)
        task.add_done_callback(self._reloads.discard)

    async def _reload(self, tenant: str, sub_id: str) -> None:
        try:
            stored = await self.broker.storage.get_subscription(tenant, sub_id)
            live = self._live.get((tenant, sub_id))
            if stored is None:
                if live is not None:
                    del self._live[(tenant, sub_id)]
                    if live.task is not None:
                        live.task.cancel()
            elif live is None:
                await self._activate(tenant, stored)
            elif live.stored != stored:
                periodic_before = "timeInterval" in live.stored
                live.ctx = await self.resolver.resolve(stored.get("jsonldContext"))
                live.stored = stored
                live.search = search_for(stored, live.ctx)
                if ("timeInterval" in stored) != periodic_before:
                    if live.task is not None:
                        live.task.cancel()
                    live.task = self._start(live)
        except Exception:  # a bad document from elsewhere must not end the listener
            log.exception("subscription %s: reloading it failed", sub_id)

    async def __aexit__(self, *exc: object) -> None:
        for task in list(self._reloads):
            task.cancel()  # the storage closes after us
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
        await self.resolver.resolve(stored.get("jsonldContext"))  # fails before it is stored
        await self.broker.storage.put_subscription(tenant, stored["id"], stored)
        await self._activate(tenant, stored)
        return str(stored["id"])

    def _get(self, tenant: str, sub_id: str) -> _Live:
        # 5.8.2.4, 5.8.3.4, 5.8.5.4: an id that is not a URI is BadRequestData (ETSI 030_01)
        ent.check_uri(sub_id, "subscription id")
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
        await self.resolver.resolve(stored.get("jsonldContext"))  # fails before it is stored
        await self.broker.storage.put_subscription(tenant, sub_id, stored)
        periodic_before = "timeInterval" in live.stored
        live.stored = stored
        live.ctx = await self.resolver.resolve(stored.get("jsonldContext"))
        live.search = search_for(stored, live.ctx)
        if ("timeInterval" in stored) != periodic_before:  # now notified on time (5.2.12)
            if live.task is not None:
                live.task.cancel()
            live.task = self._start(live)

    async def delete(self, tenant: str, sub_id: str) -> None:
        live = self._get(tenant, sub_id)
        del self._live[(tenant, sub_id)]
        self._refused.discard((tenant, sub_id))
        if live.task is not None:
            live.task.cancel()
        await self.broker.storage.delete_subscription(tenant, sub_id)

    # -- matching and delivery ----------------------------------------------------------------

    async def _activate(self, tenant: str, stored: dict[str, Any]) -> None:
        ctx = await self.resolver.resolve(stored.get("jsonldContext"))
        live = _Live(tenant=tenant, stored=stored, ctx=ctx, search=search_for(stored, ctx))
        old = self._live.get((tenant, stored["id"]))
        if old is not None and old.task is not None:
            old.task.cancel()  # activated meanwhile by _reload: one worker per subscription
        live.task = self._start(live)
        self._live[(tenant, stored["id"])] = live

    def _start(self, live: _Live) -> asyncio.Task[None]:
        work = self._periodic(live) if "timeInterval" in live.stored else self._worker(live)
        return asyncio.create_task(work, name=f"subscription {live.stored['id']}")

    def on_changes(self, changes: list[Change]) -> None:
        """Broker listener: enqueue only, never wait."""
        if not self._live:
            return
        now = ent.now_iso()
        for live in self._live.values():
            for change in changes:
                if change.tenant != live.tenant:
                    continue
                trigger = triggered(live.stored, live.search, change, now)
                if trigger is None:
                    continue
                if len(live.pending) == live.pending.maxlen:
                    live.dropped += 1
                    if live.dropped == 1:
                        log.warning(
                            "subscription %s: endpoint too slow, dropping oldest changes",
                            live.stored["id"],
                        )
                entity, previous = change.entity, change.previous
                if change.deleted and trigger.reason == "attributeDeleted":
                    # the Entity is gone: its (watched) attributes are notified as deleted,
                    # and no others (none is left)
                    entity, previous = {**entity, "attrs": {}}, change.entity
                live.pending.append(
                    _Pending(
                        entity,
                        trigger.reason == "entityDeleted",
                        now,
                        previous,
                        trigger.removed,
                        trigger.updated,
                    )
                )
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
                    older = batch.get(item.entity["id"])
                    if older is not None and not (older.deleted or item.deleted):
                        # the newest state wins; deletions and previous values carry over
                        item = _Pending(
                            item.entity,
                            False,
                            item.at,
                            older.previous,
                            older.removed | item.removed,
                            older.updated | item.updated,
                        )
                    batch[item.entity["id"]] = item
                live.last_sent = time.monotonic()
                try:
                    await self._deliver(live, list(batch.values()))
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("subscription %s: delivery failed", live.stored["id"])

    async def _periodic(self, live: _Live) -> None:
        """Periodic notification (5.2.12 timeInterval): every timeInterval seconds, the
        entities matching ``entities``, ``q`` and ``geoQ`` at that moment; none, no notice."""
        due = time.monotonic()
        while True:
            due += float(live.stored.get("timeInterval") or 1)
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            due = max(due, time.monotonic() - 1)  # a long delivery does not cause a burst
            now = ent.now_iso()
            if status_of(live.stored, now) != "active":
                continue
            try:
                # One process of those on one database notifies (5.2.12: once per interval).
                if not await self.broker.storage.lead(
                    f"periodic {live.tenant} {live.stored['id']}"
                ):
                    continue
                found = await self._matching(live)
                for start in range(0, len(found), BATCH_MAX):
                    chunk = found[start : start + BATCH_MAX]
                    await self._deliver(live, [_Pending(e, False, now) for e in chunk])
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("subscription %s: periodic notification failed", live.stored["id"])

    async def _matching(self, live: _Live) -> list[ent.Entity]:
        selectors = live.stored.get("entities") or []
        search = live.search

        def keep(entity: ent.Entity) -> bool:
            if not any(_selects(s, entity) for s in selectors):
                return False
            return search is None or search.matches(entity)

        where = EntityFilter(types=frozenset(s["type"] for s in selectors))
        found, _ = await self.broker.storage.find_entities(
            live.tenant, where, predicate=keep, limit=PERIODIC_MAX
        )
        return found

    async def _data(self, live: _Live, items: list[_Pending]) -> Any:
        """The notification's data: the notified entities, or (endpoint accept
        application/geo+json) a FeatureCollection of them, with the @context unless
        receiverInfo says Prefer: body=json (5.2.15 / NotificationData)."""
        pairs = await self._entities(live, items)
        endpoint = live.stored["notification"]["endpoint"]
        if endpoint.get("accept") != GEO_JSON:
            return [doc for _, doc in pairs]
        iri = live.ctx.expand("location")  # 4.5.16: the default geometry property
        features = [
            feature(doc, geometry_of(stored, iri) if stored is not None else None)
            for stored, doc in pairs
        ]
        collection: dict[str, Any] = {"type": "FeatureCollection", "features": features}
        if not _prefers_json(endpoint):
            collection["@context"] = context_value(live.stored.get("jsonldContext"))
        return collection

    async def _entities(
        self, live: _Live, items: list[_Pending]
    ) -> list[tuple[ent.Entity | None, dict[str, Any]]]:
        note = live.stored["notification"]
        attrs = note.get("attributes")
        selected = set(attrs) if attrs else None
        mode = note.get("format", "normalized")
        sys_attrs = bool(note.get("sysAttrs"))
        ranges = parse_lang(live.stored["lang"]) if "lang" in live.stored else None
        ids = live.stored.get("datasetId")
        datasets = parse_dataset_ids(",".join(ids)) if ids else None
        out: list[tuple[ent.Entity | None, dict[str, Any]]] = []  # deleted entities
        pairs: list[tuple[ent.Entity, dict[str, Any]]] = []  # the entities join follows
        for item in items:
            if item.deleted:  # entityDeleted (ETSI 046_21): id, type and deletedAt only
                types = [live.ctx.compact(t) for t in item.entity["type"]]
                deleted = {
                    "id": item.entity["id"],
                    "type": types[0] if len(types) == 1 else types,
                    "deletedAt": item.at,
                }
                out.append((None, deleted))
                continue
            if datasets is not None:  # 5.2.12 datasetId: only those instances (4.5.5)
                item = _in_datasets(item, datasets)  # noqa: PLW2901 - the same change, filtered
            if ranges is not None:
                item = _in_language(item, ranges)  # noqa: PLW2901 - the same change, in lang
            doc = ent.render_entity(
                item.entity, live.ctx, attrs=selected, mode=mode, sys_attrs=sys_attrs
            )
            previous = item.previous["attrs"] if item.previous is not None else {}
            show = bool(note.get("showChanges")) and mode != "keyValues"
            for iri in sorted(item.removed):
                if selected is None or iri in selected:
                    old = previous.get(iri) or []
                    _add_deleted(doc, live.ctx, iri, item, old, mode, sys_attrs, show)
            if show:
                for iri in sorted(item.updated):
                    if selected is None or iri in selected:
                        _add_previous(
                            doc, live.ctx.compact(iri), iri, item, previous.get(iri) or []
                        )
            pairs.append((item.entity, doc))
        level = note.get("joinLevel")
        join = parse_join(note.get("join"), None if level is None else str(level))
        projection = projection_of(note, live.ctx)
        if join is not None and pairs:  # 5.2.14 join/joinLevel: Linked Entities (4.5.23)

            def draw(entity: ent.Entity) -> dict[str, Any]:
                return ent.render_entity(entity, live.ctx, mode=mode, sys_attrs=sys_attrs)

            pairs = await Representation(join=join, lang=ranges).link(
                self.broker.storage,
                live.tenant,
                live.ctx,
                pairs,
                keep=selected,
                render=draw,
                mode=mode,
                projection=projection,
            )
        elif projection is not None:  # pick / omit (5.2.14, 4.21)
            pairs = [(stored, projection.apply(doc)) for stored, doc in pairs]
        return [*out, *pairs]

    async def _deliver(self, live: _Live, items: list[_Pending]) -> None:
        assert self._notifier is not None
        stored = live.stored
        note = stored["notification"]
        cooldown = note["endpoint"].get("cooldown")
        # 5.2.15 cooldown: after a failure, no notification is sent until it has passed
        failed = live.failed_at
        if cooldown and failed is not None and time.monotonic() < failed + float(cooldown) / 1000:
            return
        now = ent.now_iso()
        body = notification_body(stored["id"], await self._data(live, items), now)
        uri = str(note["endpoint"]["uri"])
        if self.resolver.allow_list.permits(uri):
            outcome = await self._notifier.send(
                note["endpoint"], body, context=stored.get("jsonldContext"), tenant=live.tenant
            )
        else:
            # Stored before --allow-endpoint was set or narrowed: not sent (SSRF), a failure.
            outcome = Outcome(ok=False, detail="endpoint outside the --allow-endpoint list")
            if (live.tenant, stored["id"]) not in self._refused:
                self._refused.add((live.tenant, stored["id"]))
                log.warning(
                    "subscription %s: not notifying %s, outside the --allow-endpoint list",
                    stored["id"],
                    uri,
                )
        done = ent.now_iso()
        note = live.stored["notification"] = dict(live.stored["notification"])
        note["timesSent"] = int(note.get("timesSent", 0)) + 1
        note["lastNotification"] = now
        live.failed_at = None if outcome.ok else time.monotonic()
        if outcome.ok:
            note["status"] = "ok"
            note["lastSuccess"] = done
        else:
            note["status"] = "failed"
            note["lastFailure"] = done
            note["timesFailed"] = int(note.get("timesFailed", 0)) + 1
        if (live.tenant, stored["id"]) in self._live:
            await self.broker.storage.put_subscription(live.tenant, stored["id"], live.stored)
