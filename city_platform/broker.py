"""The context broker: NGSI-LD entity operations on top of a :class:`Storage` backend.

Routes translate HTTP to these calls; backends only store.  Every write reports a
:class:`Change` to the registered listeners (the subscription manager) after it is committed.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from city_platform import entities as ent
from city_platform.errors import (
    AlreadyExists,
    BadRequestData,
    NonexistentTenant,
    PlatformError,
    ResourceNotFound,
)
from city_platform.ldcontext import Context
from city_platform.models import BatchEntityError, BatchOperationResult
from city_platform.storage.base import Entity, HistoryRow, Storage

log = logging.getLogger(__name__)


class Change(NamedTuple):
    """One committed change of one entity; ``attrs`` are the IRIs written (empty on delete).

    ``removed`` names attributes of which instances were deleted (Delete Attribute, 5.6.5),
    so that an ``attributeDeleted`` subscription (5.2.12) tells a deleted instance of a
    still present attribute from an update; an attribute that is gone altogether is also
    found by comparing ``previous`` with ``entity``.

    A named tuple: one is built per entity of every batch upsert."""

    tenant: str
    entity: Entity
    previous: Entity | None
    attrs: frozenset[str]
    deleted: bool = False
    removed: frozenset[str] = frozenset()


Listener = Callable[[list[Change]], None]


@dataclass
class BatchResult:
    """BatchOperationResult (CIM 009 5.2.16): successes and per-entity ProblemDetails
    (BatchEntityError, 5.2.17); the shapes are the contract's (:mod:`city_platform.models`)."""

    success: list[str] = field(default_factory=list)
    errors: list[BatchEntityError] = field(default_factory=list)
    created: list[str] = field(default_factory=list)

    def fail(self, entity_id: object, error: PlatformError) -> None:
        self.errors.append({"entityId": entity_id, "error": error.problem()})

    def body(self) -> BatchOperationResult:
        return {"success": self.success, "errors": self.errors}


# Instance ids are a per-process random prefix plus a counter: unique across restarts and
# processes, and much cheaper than one uuid4 per history row on the ingestion hot path.
_INSTANCE_PREFIX = f"urn:ngsi-ld:attribute:instance:{uuid.uuid4()}:"
_instance_counter = itertools.count(1)


def history_rows(
    entity_id: str, attrs: dict[str, list[ent.Instance]], now: str
) -> list[HistoryRow]:
    """History for every written instance; the temporal API keys it by observedAt (4.5.7)."""
    rows = []
    utc_key = ent.utc_key
    for iri, instances in attrs.items():
        for inst in instances:
            observed = inst.get("observedAt")
            instance_id = _INSTANCE_PREFIX + str(next(_instance_counter))
            rows.append(
                HistoryRow(  # positional: one per reading
                    entity_id,
                    iri,
                    inst.get("datasetId"),
                    utc_key(observed) if observed else None,
                    utc_key(inst.get("modifiedAt", now)),
                    instance_id,
                    {**inst, "instanceId": instance_id},
                )
            )
    return rows


def _deleted_instance(inst: ent.Instance, now: str) -> ent.Instance:
    """The history's record of a deleted Attribute instance: its type and datasetId, the
    NGSI-LD Null as its value, ``deletedAt`` (and ``modifiedAt``) the time of deletion."""
    atype = inst.get("type", "Property")
    out: ent.Instance = {"type": atype, ent.VALUE_KEY.get(atype, "value"): ent.NGSI_LD_NULL}
    if "datasetId" in inst:
        out["datasetId"] = inst["datasetId"]
    out["modifiedAt"] = out["deletedAt"] = now
    return out


class ContextBroker:
    """Entity, batch and discovery operations for all tenants."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def publish(self, changes: list[Change]) -> None:
        """Tell the listeners about changes committed outside this class (temporal writes)."""
        self._emit(changes)

    def _emit(self, changes: list[Change]) -> None:
        if not changes:
            return
        for listener in self._listeners:
            try:
                listener(changes)
            except Exception:
                log.exception("change listener failed")

    async def check_tenant(self, tenant: str) -> None:
        if not await self.storage.tenant_exists(tenant):
            raise NonexistentTenant(f"tenant {tenant!r} does not exist")

    async def get(self, tenant: str, entity_id: str) -> Entity:
        ent.check_uri(entity_id, "entity id")
        await self.check_tenant(tenant)
        found = (await self.storage.get_entities(tenant, [entity_id])).get(entity_id)
        if found is None:
            raise ResourceNotFound(f"entity {entity_id!r} not found")
        return found

    async def create(self, tenant: str, doc: object, ctx: Context) -> str:
        now = ent.now_iso()
        entity = ent.normalize_entity(doc, ctx, now=now)
        rows = history_rows(entity["id"], entity["attrs"], now)
        if not await self.storage.insert_entity(tenant, entity, rows):
            raise AlreadyExists(f"entity {entity['id']!r} already exists")
        self._emit([Change(tenant, entity, None, frozenset(entity["attrs"]))])
        return str(entity["id"])

    async def delete(self, tenant: str, entity_id: str) -> None:
        entity = await self.get(tenant, entity_id)
        await self.storage.delete_entities(tenant, [entity_id])
        self._emit([Change(tenant, entity, entity, frozenset(), deleted=True)])

    async def _write_one(
        self, tenant: str, entity: Entity, previous: Entity, written: dict[str, Any], now: str
    ) -> None:
        rows = history_rows(entity["id"], written, now)
        await self.storage.write_entities(tenant, [entity], rows)
        self._emit([Change(tenant, entity, previous, frozenset(written))])

    async def delete_attr(
        self,
        tenant: str,
        entity_id: str,
        attr: str,
        ctx: Context,
        *,
        dataset_id: str | None = None,
        delete_all: bool = False,
    ) -> None:
        entity = await self.get(tenant, entity_id)
        previous = _copy(entity)
        iri = ctx.expand(ent.check_name(attr, "attribute name"))
        instances = entity["attrs"].get(iri)
        if instances is None:
            raise ResourceNotFound(f"attribute {attr!r} not found in {entity_id!r}")
        if delete_all:
            kept: list[ent.Instance] = []
        else:
            kept = [i for i in instances if i.get("datasetId") != dataset_id]
            if len(kept) == len(instances):
                raise ResourceNotFound(f"attribute {attr!r} has no instance {dataset_id!r}")
        if kept:
            entity["attrs"][iri] = kept
        else:
            del entity["attrs"][iri]
        now = ent.now_iso()
        entity["modifiedAt"] = now
        # The history keeps the deletion: an instance with the NGSI-LD Null and deletedAt per
        # deleted instance, which timeproperty=deletedAt retrieves (CIM 009 4.8, 5.7.3).
        deleted = [_deleted_instance(i, now) for i in instances if i not in kept]
        rows = history_rows(entity_id, {iri: deleted}, now)
        await self.storage.write_entities(tenant, [entity], rows)
        gone = frozenset({iri})
        self._emit([Change(tenant, entity, previous, gone, removed=gone)])

    async def replace(self, tenant: str, entity_id: str, doc: object, ctx: Context) -> None:
        """Replace entity (5.6.18): same id, new type and attributes."""
        if isinstance(doc, dict) and "id" not in doc:
            doc = {**doc, "id": entity_id}
        if isinstance(doc, dict) and doc.get("id") != entity_id:
            raise BadRequestData("the id in the body differs from the id in the URL")
        previous = await self.get(tenant, entity_id)
        now = ent.now_iso()
        if isinstance(doc, dict) and "type" not in doc:
            doc = {**doc, "type": [ctx.compact(t) for t in previous["type"]]}
        entity = ent.normalize_entity(doc, ctx, now=now)
        entity["createdAt"] = previous.get("createdAt", now)
        await self._write_one(tenant, entity, previous, entity["attrs"], now)

    # -- batch operations (5.6.7 - 5.6.10) -------------------------------------------------

    async def batch_write(
        self,
        tenant: str,
        docs: object,
        ctx: Context,
        *,
        mode: Literal["create", "upsert"],
        replace: bool = True,
        overwrite: bool = True,
    ) -> BatchResult:
        """Create or upsert (replace or update) many entities in one transaction.  Batch
        update (5.6.9) is ``city_platform.provision.batch_update``."""
        if not isinstance(docs, list):
            raise BadRequestData("a batch operation takes a JSON array of entities")
        result = BatchResult()
        now = ent.now_iso()
        parsed: list[tuple[Entity, dict[str, Any]]] = []
        for doc in docs:
            entity_id = doc.get("id") if isinstance(doc, dict) else None
            try:
                parsed.append((ent.normalize_entity(doc, ctx, now=now), doc))
            except PlatformError as exc:
                result.fail(entity_id, exc)
        # Shared: merges below go into copies (_copy), never into the stored documents.
        existing = await self.storage.get_entities(
            tenant, (e["id"] for e, _ in parsed), shared=True
        )
        writes: dict[str, Entity] = {}
        rows: list[HistoryRow] = []
        changes: list[Change] = []
        succeeded: set[str] = set()  # result.success as a set: a list scan per entity was
        # quadratic in the batch size (a third of the platform's time with 1,000 devices)
        for incoming, _ in parsed:
            entity_id = incoming["id"]
            current = writes.get(entity_id) or existing.get(entity_id)
            if mode == "create" and current is not None:
                result.fail(entity_id, AlreadyExists(f"entity {entity_id!r} already exists"))
                continue
            if current is None or (mode == "upsert" and replace):
                entity = incoming
                if current is not None:
                    entity["createdAt"] = current.get("createdAt", now)
                else:
                    result.created.append(entity_id)
                written = entity["attrs"]
            else:
                entity = _copy(current)
                types = incoming.get("type")
                if types and types != entity["type"]:  # stored types hold no duplicates
                    entity["type"] = list(dict.fromkeys([*entity["type"], *types]))
                updated, _ = ent.merge_attrs(
                    entity, incoming["attrs"], now=now, overwrite=overwrite
                )
                written = _only_new(entity["attrs"], updated, incoming["attrs"])
                scope = incoming.get("scope")
                if scope is not None:  # 4.18: replaced; added to with noOverwrite (ETSI 010_07)
                    old = entity.get("scope", [])
                    entity["scope"] = scope if overwrite else list(dict.fromkeys([*old, *scope]))
            writes[entity_id] = entity
            rows.extend(history_rows(entity_id, written, now))
            changes.append(Change(tenant, entity, current, frozenset(written)))
            if entity_id not in succeeded:
                succeeded.add(entity_id)
                result.success.append(entity_id)
        if writes:
            await self.storage.write_entities(tenant, list(writes.values()), rows)
            self._emit(changes)
        return result

    async def batch_delete(self, tenant: str, ids: object) -> BatchResult:
        if not isinstance(ids, list):
            raise BadRequestData("batch delete takes a JSON array of entity ids")
        result = BatchResult()
        valid: list[str] = []
        for item in ids:
            try:
                valid.append(ent.check_uri(item, "entity id"))
            except PlatformError as exc:
                result.fail(item, exc)
        existing = await self.storage.get_entities(tenant, valid)
        deleted = await self.storage.delete_entities(tenant, valid)
        for entity_id in valid:
            if entity_id in deleted:
                result.success.append(entity_id)
            else:
                result.fail(entity_id, ResourceNotFound(f"entity {entity_id!r} not found"))
        self._emit(
            [Change(tenant, existing[i], existing[i], frozenset(), deleted=True) for i in deleted]
        )
        return result

    # -- discovery (5.7.5 - 5.7.8) --------------------------------------------------------

    async def type_summary(self, tenant: str) -> dict[str, dict[str, set[str]]]:
        """type IRI -> attribute IRI -> attribute types, and entity counts under '#count'."""
        await self.check_tenant(tenant)
        from city_platform.storage.base import EntityFilter  # noqa: PLC0415

        found, _ = await self.storage.find_entities(tenant, EntityFilter())
        summary: dict[str, dict[str, set[str]]] = {}
        for entity in found:
            for type_iri in entity["type"]:
                info = summary.setdefault(type_iri, {"#count": set()})
                info["#count"].add(entity["id"])
                for iri, instances in entity["attrs"].items():
                    info.setdefault(iri, set()).update(i.get("type", "Property") for i in instances)
        return summary


def _copy(entity: Entity) -> Entity:
    """A copy deep enough that merging into it leaves the original untouched."""
    return {**entity, "attrs": {k: list(v) for k, v in entity["attrs"].items()}}


def _only_new(
    stored: dict[str, list[Any]], updated: list[str], incoming: dict[str, list[Any]]
) -> dict[str, Any]:
    """Of the stored instances of the ``updated`` attributes, those that came in this request
    (they go to history)."""
    out: dict[str, Any] = {}
    for iri in updated:
        new = incoming.get(iri, [])
        if len(new) == 1:  # merge_attrs stored it, or iri would not be updated (per reading)
            out[iri] = new
            continue
        ids = {id(i) for i in new}
        fresh = [i for i in stored[iri] if id(i) in ids]
        if fresh:
            out[iri] = fresh
    return out
