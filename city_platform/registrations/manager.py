"""The registrations of every tenant while the platform runs, and their subscriptions.

* Context Source Registration CRUD (CIM 009 5.9.2-5.9.4) and Query / Retrieve (5.10.1, 5.10.2),
  kept in memory and written through to the storage (``csources`` documents).
* Context Source Registration Subscriptions (5.11.2-5.11.6): the Subscription data type of
  5.2.12 (its validation is the entity subscriptions'), notified with a
  ContextSourceNotification (5.3.2) whose ``triggerReason`` is ``newlyMatching``, ``updated``
  or ``noLongerMatching`` (5.11.7) when a matching registration is created, updated or deleted.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from city_platform import entities as ent
from city_platform.errors import (
    AlreadyExists,
    OperationNotSupported,
    PlatformError,
    ResourceNotFound,
)
from city_platform.ldcontext import Context, ContextResolver
from city_platform.registrations.model import (
    Selection,
    as_entity,
    attribute_keys,
    is_expired,
    new_registration,
    overlaps,
    render_registration,
    subscription_matches,
    update_registration,
)
from city_platform.search import EntitySearch
from city_platform.storage.base import EntityFilter, Storage
from city_platform.subscriptions.model import (
    new_subscription,
    render_subscription,
    search_for,
    status_of,
    update_subscription,
)
from city_platform.subscriptions.notifier import Notifier, Outcome

log = logging.getLogger(__name__)

REGISTRATION = "registration"
SUBSCRIPTION = "subscription"


@dataclass
class _CSub:
    stored: dict[str, Any]
    ctx: Context
    search: EntitySearch | None
    # Notifications of one subscription leave in the order of the changes (FIFO lock).
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def _not_periodic(doc: object) -> None:
    if isinstance(doc, dict) and "timeInterval" in doc:
        raise OperationNotSupported("periodic csource subscriptions (timeInterval, 5.11.7)")


class RegistrationManager:
    """Owns the registrations and csource subscriptions of every tenant."""

    def __init__(self, storage: Storage, resolver: ContextResolver) -> None:
        self.storage = storage
        self.resolver = resolver
        # Names this broker in ``Via`` (6.3.18) so a forwarded request that comes back is not
        # forwarded again (4.3.6.4); one per process.
        self.broker_id = f"r197-{uuid.uuid4().hex[:12]}"
        self._regs: dict[tuple[str, str], dict[str, Any]] = {}
        self._subs: dict[tuple[str, str], _CSub] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def load(self) -> None:
        for tenant, stored in await self.storage.list_csource_docs(REGISTRATION):
            self._regs[(tenant, stored["id"])] = stored
        for tenant, stored in await self.storage.list_csource_docs(SUBSCRIPTION):
            try:
                self._subs[(tenant, stored["id"])] = await self._live(stored)
            except PlatformError as exc:
                log.warning("csource subscription %s cannot be loaded: %s", stored["id"], exc)

    # -- registrations (5.9, 5.10) ------------------------------------------------------------

    async def create(self, tenant: str, doc: object, ctx: Context, context_source: Any) -> str:
        stored = new_registration(doc, ctx, context_source=context_source, now=ent.now_iso())
        key = (tenant, stored["id"])
        if key in self._regs:
            raise AlreadyExists(f"registration {stored['id']!r} already exists")
        await self._check_conflicts(tenant, stored)
        await self.storage.put_csource_doc(REGISTRATION, tenant, stored["id"], stored)
        self._regs[key] = stored
        self._changed(tenant, None, stored)
        return str(stored["id"])

    async def _check_conflicts(self, tenant: str, stored: dict[str, Any]) -> None:
        """4.3.6.3 and 5.9.2.4, for the proxied modes (409, reported as AlreadyExists, the
        error type of 409 in Table 6.3.2-1): no exclusive or redirect registration for an
        Entity id and Attribute an exclusive one already holds; an exclusive registration
        must not name Attributes that an existing local Entity has, a redirect one must not
        cover an existing local Entity."""
        mode = stored.get("mode")
        if mode not in ("exclusive", "redirect"):
            return
        mine = attribute_keys(stored)
        for (t, other_id), other in self._regs.items():
            if t != tenant or other_id == stored["id"] or other.get("mode") != "exclusive":
                continue
            if overlaps(mine, attribute_keys(other)):
                raise AlreadyExists(
                    f"conflict: exclusive registration {other_id!r} already holds these "
                    "Entity Attributes (4.3.6.3)"
                )
        for info in stored["information"]:
            for sel in info.get("entities", ()):
                found = await self._local_entities(tenant, sel)
                names = {*info.get("propertyNames", ()), *info.get("relationshipNames", ())}
                for entity in found:
                    if mode == "redirect" or not names.isdisjoint(entity["attrs"]):
                        raise AlreadyExists(
                            f"conflict: entity {entity['id']!r} exists here and the {mode} "
                            "registration covers it (5.9.2.4)"
                        )

    async def _local_entities(self, tenant: str, sel: dict[str, str]) -> list[dict[str, Any]]:
        if "id" in sel:
            found = await self.storage.get_entities(tenant, [sel["id"]])
            return [e for e in found.values() if sel["type"] in e["type"]]
        where = EntityFilter(types=frozenset([sel["type"]]), id_pattern=sel.get("idPattern"))
        page, _ = await self.storage.find_entities(tenant, where, limit=1)
        return page

    def get(self, tenant: str, reg_id: str) -> dict[str, Any]:
        ent.check_uri(reg_id, "registration id")
        stored = self._regs.get((tenant, reg_id))
        if stored is None:
            raise ResourceNotFound(f"registration {reg_id!r} not found")
        return stored

    def render(
        self, tenant: str, reg_id: str, ctx: Context, *, sys_attrs: bool = False
    ) -> dict[str, Any]:
        return render_registration(self.get(tenant, reg_id), ctx, sys_attrs=sys_attrs)

    def query(self, tenant: str, selection: Selection, ctx: Context) -> list[dict[str, Any]]:
        """Query Context Source Registrations (5.10.2), in creation order."""
        return [
            stored
            for (t, _), stored in self._regs.items()
            if t == tenant and selection.matches(stored, ctx.expand)
        ]

    async def update(self, tenant: str, reg_id: str, fragment: object, ctx: Context) -> None:
        old = self.get(tenant, reg_id)
        stored = update_registration(old, fragment, ctx, now=ent.now_iso())
        await self._check_conflicts(tenant, stored)
        await self.storage.put_csource_doc(REGISTRATION, tenant, reg_id, stored)
        self._regs[(tenant, reg_id)] = stored
        self._changed(tenant, old, stored)

    async def delete(self, tenant: str, reg_id: str) -> None:
        old = self.get(tenant, reg_id)
        del self._regs[(tenant, reg_id)]
        await self.storage.delete_csource_doc(REGISTRATION, tenant, reg_id)
        self._changed(tenant, old, None)

    def has_registrations(self, tenant: str) -> bool:
        """Whether ``tenant`` has any registration: every read asks, most tenants have none."""
        return any(t == tenant for t, _ in self._regs)

    def for_forwarding(
        self, tenant: str, selection: Selection, operations: frozenset[str], ctx: Context
    ) -> list[dict[str, Any]]:
        """The live registrations of ``tenant`` a read is forwarded to (4.3.6.3): not expired,
        offering one of ``operations``, and whose information can hold what is asked for."""
        if not self.has_registrations(tenant):
            return []
        now = ent.now_iso()
        return [
            stored
            for (t, _), stored in self._regs.items()
            if t == tenant
            and not is_expired(stored, now)
            and not operations.isdisjoint(stored.get("operations", ()))
            and selection.info_matches(stored)
            and selection.csf_matches(stored, ctx.expand)
        ]

    async def record(self, tenant: str, reg_id: str, *, ok: bool) -> None:
        """Keep the forwarding status of Table 5.2.9-2 (status, timesSent, ...)."""
        stored = self._regs.get((tenant, reg_id))
        if stored is None:
            return
        now = ent.now_iso()
        stored["timesSent"] = int(stored.get("timesSent", 0)) + 1
        if ok:
            stored["status"] = "ok"
            stored["lastSuccess"] = now
        else:
            stored["status"] = "failed"
            stored["lastFailure"] = now
            stored["timesFailed"] = int(stored.get("timesFailed", 0)) + 1
        await self.storage.put_csource_doc(REGISTRATION, tenant, reg_id, stored)

    # -- csource subscriptions (5.11) ---------------------------------------------------------

    async def _live(self, stored: dict[str, Any]) -> _CSub:
        ctx = await self.resolver.resolve(stored.get("jsonldContext"))
        return _CSub(stored=stored, ctx=ctx, search=search_for(stored, ctx))

    async def create_subscription(
        self, tenant: str, doc: object, ctx: Context, context_source: Any
    ) -> str:
        _not_periodic(doc)
        stored = new_subscription(doc, ctx, context_source=context_source, now=ent.now_iso())
        key = (tenant, stored["id"])
        if key in self._subs:
            raise AlreadyExists(f"subscription {stored['id']!r} already exists")
        await self.storage.put_csource_doc(SUBSCRIPTION, tenant, stored["id"], stored)
        live = self._subs[key] = await self._live(stored)
        # 5.11.2 (ETSI 047_02): the registrations matching already are notified at once.
        if status_of(stored, ent.now_iso()) == "active":
            matching = [
                r for (t, _), r in self._regs.items() if t == tenant and self._matches(live, r)
            ]
            if matching:
                self._spawn(self._notify(tenant, live, matching, "newlyMatching"))
        return str(stored["id"])

    def _sub(self, tenant: str, sub_id: str) -> _CSub:
        ent.check_uri(sub_id, "subscription id")
        live = self._subs.get((tenant, sub_id))
        if live is None:
            raise ResourceNotFound(f"csource subscription {sub_id!r} not found")
        return live

    def render_subscription(
        self, tenant: str, sub_id: str, ctx: Context, *, sys_attrs: bool = False
    ) -> dict[str, Any]:
        stored = self._sub(tenant, sub_id).stored
        return render_subscription(stored, ctx, now=ent.now_iso(), sys_attrs=sys_attrs)

    def subscriptions(
        self, tenant: str, ctx: Context, *, sys_attrs: bool = False
    ) -> list[dict[str, Any]]:
        now = ent.now_iso()
        return [
            render_subscription(live.stored, ctx, now=now, sys_attrs=sys_attrs)
            for (t, _), live in self._subs.items()
            if t == tenant
        ]

    async def update_subscription(
        self, tenant: str, sub_id: str, fragment: object, ctx: Context
    ) -> None:
        live = self._sub(tenant, sub_id)
        _not_periodic(fragment)
        stored = update_subscription(live.stored, fragment, ctx, now=ent.now_iso())
        await self.storage.put_csource_doc(SUBSCRIPTION, tenant, sub_id, stored)
        self._subs[(tenant, sub_id)] = await self._live(stored)

    async def delete_subscription(self, tenant: str, sub_id: str) -> None:
        self._sub(tenant, sub_id)
        del self._subs[(tenant, sub_id)]
        await self.storage.delete_csource_doc(SUBSCRIPTION, tenant, sub_id)

    def _matches(self, live: _CSub, reg: dict[str, Any] | None) -> bool:
        if reg is None:
            return False
        search = live.search
        check = (
            None if search is None else (lambda r: search.matches(as_entity(r, live.ctx.expand)))
        )
        return subscription_matches(live.stored, reg, check)

    def _changed(self, tenant: str, old: dict[str, Any] | None, new: dict[str, Any] | None) -> None:
        """5.11.7: notify the csource subscriptions a registration change concerns."""
        now = ent.now_iso()
        for (t, _), live in list(self._subs.items()):
            if t != tenant or status_of(live.stored, now) != "active":
                continue
            before, after = self._matches(live, old), self._matches(live, new)
            if after:
                reason = "updated" if before else "newlyMatching"
            elif before:
                reason = "noLongerMatching"
            else:
                continue
            reg = new if new is not None else old
            assert reg is not None
            self._spawn(self._notify(tenant, live, [reg], reason))

    def _spawn(self, job: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(
        self, tenant: str, live: _CSub, regs: list[dict[str, Any]], reason: str
    ) -> None:
        stored = live.stored
        note = stored["notification"]
        now = ent.now_iso()
        body = {
            "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
            "type": "ContextSourceNotification",
            "subscriptionId": stored["id"],
            "notifiedAt": now,
            "data": [render_registration(r, live.ctx) for r in regs],
            "triggerReason": reason,
        }
        notifier = Notifier()
        try:
            async with live.lock:
                if self.resolver.allow_list.permits(str(note["endpoint"]["uri"])):
                    outcome = await notifier.send(
                        note["endpoint"], body, context=stored.get("jsonldContext"), tenant=tenant
                    )
                else:  # stored before --allow-endpoint was set or narrowed (SSRF): a failure
                    outcome = Outcome(ok=False, detail="outside the --allow-endpoint list")
        except Exception:
            log.exception("csource subscription %s: delivery failed", stored["id"])
            return
        finally:
            await notifier.aclose()
        done = ent.now_iso()
        note = stored["notification"] = dict(stored["notification"])
        note["timesSent"] = int(note.get("timesSent", 0)) + 1
        note["lastNotification"] = now
        if outcome.ok:
            note["status"] = "ok"
            note["lastSuccess"] = done
        else:
            note["status"] = "failed"
            note["lastFailure"] = done
            note["timesFailed"] = int(note.get("timesFailed", 0)) + 1
        if self._subs.get((tenant, stored["id"])) is live:
            await self.storage.put_csource_doc(SUBSCRIPTION, tenant, stored["id"], stored)
