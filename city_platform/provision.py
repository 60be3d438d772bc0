"""Context information provision beyond create and delete (ETSI GS CIM 009 V1.8.1 clause 5.6):
Update Entity Attributes (5.6.2), Append (5.6.3), Partial Attribute Update (5.6.4), Merge
Entity (5.6.17), Replace Attribute (5.6.19), Batch Entity Update (5.6.9), Batch Entity Merge
(5.6.20) and Purge Entities (5.6.21 of V1.9.1), on a :class:`ContextBroker`.

What a fragment does to an entity, and the NGSI-LD Null, are :mod:`city_platform.fragments`'.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from city_platform import entities as ent
from city_platform.broker import (
    BatchResult,
    Change,
    ContextBroker,
    _copy,
    _deleted_instance,
    history_rows,
)
from city_platform.errors import BadRequestData, PlatformError, ResourceNotFound
from city_platform.fragments import (
    Applied,
    Mode,
    apply_fragment,
    dataset_id,
    is_null_instance,
    merge_instance,
)
from city_platform.ldcontext import Context
from city_platform.query.typeexpr import parse_type_selection
from city_platform.storage.base import Entity, HistoryRow


def check_type(entity: Entity, selection: str | None, ctx: Context) -> None:
    """The optional entity type selector of 5.6.2, 5.6.3 and 5.6.4 (4.17): an entity not of
    that type is not found."""
    if selection is None:
        return
    parsed = parse_type_selection(selection, ctx)
    if parsed is not None and not parsed.matches(entity["type"]):
        raise ResourceNotFound(f"entity {entity['id']!r} is not of type {selection!r}")


def _rows(
    entity_id: str,
    applied: Applied,
    now: str,
    previous: Entity | None = None,
    entity: Entity | None = None,
) -> list[HistoryRow]:
    """History rows for the written instances and, given the entity before the change, a
    deletion record per instance an NGSI-LD Null removed (the NGSI-LD Null with ``deletedAt``,
    as Delete Attribute leaves; CIM 009 4.8, 5.6.2, 5.6.4, 5.6.17, 5.7.3 timeproperty)."""
    rows = history_rows(entity_id, applied.written, now)
    if previous is not None and entity is not None and applied.removed:
        gone = _deletions(previous, entity, applied.removed, now)
        rows.extend(history_rows(entity_id, gone, now))
    return rows


def _deletions(
    previous: Entity, entity: Entity, removed: set[str], now: str
) -> dict[str, list[ent.Instance]]:
    """The deleted instances: those of a removed attribute before the change whose datasetId
    the attribute no longer holds after it."""
    out: dict[str, list[ent.Instance]] = {}
    for iri in removed:
        kept = {i.get("datasetId") for i in entity["attrs"].get(iri, [])}
        gone = [
            _deleted_instance(i, now)
            for i in previous["attrs"].get(iri, [])
            if i.get("datasetId") not in kept
        ]
        if gone:
            out[iri] = gone
    return out


def _change(tenant: str, entity: Entity, previous: Entity, applied: Applied) -> Change:
    """``removed``: the attributes of which a Null deleted instances (5.2.12 attributeDeleted)."""
    removed = frozenset(applied.removed)
    return Change(tenant, entity, previous, frozenset(applied.written) | removed, removed=removed)


async def change_entity(
    broker: ContextBroker,
    tenant: str,
    entity_id: str,
    doc: object,
    ctx: Context,
    *,
    mode: Mode,
    overwrite: bool = True,
    type_selection: str | None = None,
) -> tuple[list[str], list[str]]:
    """Append (5.6.3), update (5.6.2) or merge (5.6.17) one entity; returns the IRIs of the
    attributes updated and of those not updated."""
    if not isinstance(doc, dict):
        raise BadRequestData("the request body must be a JSON object (an entity fragment)")
    if "id" in doc and doc["id"] != entity_id:
        raise BadRequestData("the id in the body differs from the id in the URL")
    entity = await broker.get(tenant, entity_id)
    check_type(entity, type_selection, ctx)
    previous = _copy(entity)
    now = ent.now_iso()
    applied = apply_fragment(entity, doc, ctx, now, mode=mode, overwrite=overwrite)
    if applied.changed:
        rows = _rows(entity_id, applied, now, previous, entity)
        await broker.storage.write_entities(tenant, [entity], rows)
        broker.publish([_change(tenant, entity, previous, applied)])
    return applied.updated, applied.skipped


def _find_instance(
    entity: Entity, iri: str, attr: str, dataset: str | None
) -> tuple[list[ent.Instance], int]:
    instances = entity["attrs"].get(iri)
    idx = (
        -1
        if instances is None
        else next((i for i, x in enumerate(instances) if x.get("datasetId") == dataset), -1)
    )
    if instances is None or idx < 0:
        raise ResourceNotFound(f"attribute {attr!r} (datasetId {dataset!r}) not found")
    return instances, idx


def _attr_iri(attr: str, ctx: Context) -> str:
    if attr in ("id", "type", "scope") or attr.startswith("@"):
        raise BadRequestData(f"{attr!r} is not an attribute name")
    return ctx.expand(ent.check_name(attr, "attribute name"))


async def patch_attribute(
    broker: ContextBroker,
    tenant: str,
    entity_id: str,
    attr: str,
    doc: object,
    ctx: Context,
    *,
    type_selection: str | None = None,
) -> None:
    """Partial Attribute Update (5.6.4): the fragment is merged into the instance of its
    datasetId; a Null value deletes that instance, a Null member deletes the member."""
    ent.check_uri(entity_id, "entity id")
    iri = _attr_iri(attr, ctx)
    if not isinstance(doc, dict):
        raise BadRequestData("the request body must be a JSON object (an attribute fragment)")
    entity = await broker.get(tenant, entity_id)
    check_type(entity, type_selection, ctx)
    previous = _copy(entity)
    dataset = dataset_id(attr, doc)
    instances, idx = _find_instance(entity, iri, attr, dataset)
    now = ent.now_iso()
    applied = Applied()
    if is_null_instance(doc):
        del instances[idx]
        if not instances:
            del entity["attrs"][iri]
        applied.removed.add(iri)
    else:
        inst = merge_instance(attr, instances[idx], doc, ctx, now, patch_values=False)
        instances[idx] = inst
        applied.written[iri] = [inst]
    entity["modifiedAt"] = now
    rows = _rows(entity_id, applied, now, previous, entity)
    await broker.storage.write_entities(tenant, [entity], rows)
    broker.publish([_change(tenant, entity, previous, applied)])


async def replace_attribute(
    broker: ContextBroker, tenant: str, entity_id: str, attr: str, doc: object, ctx: Context
) -> None:
    """Replace Attribute (5.6.19): the instance of the body's datasetId is replaced as a
    whole (its createdAt kept); a missing entity or instance is 404."""
    ent.check_uri(entity_id, "entity id")
    iri = _attr_iri(attr, ctx)
    if isinstance(doc, dict) and "value" not in doc and attr in doc and len(doc) == 1:
        doc = doc[attr]  # the attribute given as a one-member fragment {"attr": {...}}
    entity = await broker.get(tenant, entity_id)
    previous = _copy(entity)
    now = ent.now_iso()
    new = ent.normalize_attribute(attr, doc, ctx, now=now)
    if len(new) != 1:
        raise BadRequestData("Replace Attribute takes one attribute instance")
    inst = new[0]
    instances, idx = _find_instance(entity, iri, attr, inst.get("datasetId"))
    inst["createdAt"] = instances[idx].get("createdAt", now)
    instances[idx] = inst
    entity["modifiedAt"] = now
    applied = Applied()
    applied.written[iri] = [inst]
    await broker.storage.write_entities(tenant, [entity], _rows(entity_id, applied, now))
    broker.publish([_change(tenant, entity, previous, applied)])


async def batch_merge(
    broker: ContextBroker, tenant: str, docs: object, ctx: Context
) -> BatchResult:
    """Batch Entity Merge (5.6.20): Merge Entity (5.6.17) for each entity of the array, in one
    storage transaction; a missing or invalid entity is an error of the BatchOperationResult."""
    if not isinstance(docs, list) or not docs:
        raise BadRequestData("Batch Entity Merge takes a non-empty JSON array of entities")
    if any(d is None for d in docs):
        raise BadRequestData("Batch Entity Merge: null is not an entity (5.6.20.4, 5.5.4)")

    def merge(entity: Entity, doc: dict[str, Any], now: str) -> Applied:
        return apply_fragment(entity, doc, ctx, now, mode="merge")

    return await _batch_fragments(broker, tenant, docs, ctx, merge, report_skipped=False)


async def batch_update(
    broker: ContextBroker, tenant: str, docs: object, ctx: Context, *, overwrite: bool = True
) -> BatchResult:
    """Batch Entity Update (5.6.9): for each entity of the array, its attributes are appended
    as in Append Entity Attributes (5.6.3: a new attribute or datasetId is added, an existing
    instance replaced, or kept with ``noOverwrite``), and the NGSI-LD Null deletes as in
    Update Entity Attributes (5.6.2); all in one storage transaction.

    A missing entity or an invalid fragment is an error of the BatchOperationResult (5.2.16);
    so is an entity of which ``noOverwrite`` kept some attributes (ETSI 005_02_01 expects 207),
    the attributes it could add being added all the same."""
    if not isinstance(docs, list):
        raise BadRequestData("a batch operation takes a JSON array of entities")

    def append(entity: Entity, doc: dict[str, Any], now: str) -> Applied:
        return apply_fragment(
            entity, doc, ctx, now, mode="append", overwrite=overwrite, null_deletes=True
        )

    return await _batch_fragments(broker, tenant, docs, ctx, append, report_skipped=True)


async def _batch_fragments(
    broker: ContextBroker,
    tenant: str,
    docs: list[Any],
    ctx: Context,
    apply: Callable[[Entity, dict[str, Any], str], Applied],
    *,
    report_skipped: bool,
) -> BatchResult:
    """Apply each entity fragment of a batch with ``apply`` to its stored entity, in one
    storage transaction; what fails is an error of the BatchOperationResult (5.2.16), and with
    ``report_skipped`` so is an entity of which attributes were kept back."""
    result = BatchResult()
    ids = [d["id"] for d in docs if isinstance(d, dict) and isinstance(d.get("id"), str)]
    existing = await broker.storage.get_entities(tenant, ids)
    now = ent.now_iso()
    writes: dict[str, Entity] = {}
    rows: list[HistoryRow] = []
    changes: list[Change] = []
    for doc in docs:
        entity_id = doc.get("id") if isinstance(doc, dict) else None
        try:
            if not isinstance(doc, dict):
                raise BadRequestData("an entity must be a JSON object")
            ent.check_uri(entity_id, "entity id")
            # The fragment is checked first (5.5.4): an invalid one is BadRequestData whether
            # or not the entity exists (ETSI 057_03_02).
            apply({"id": entity_id, "type": [], "attrs": {}}, doc, now)
            current = writes.get(entity_id) or existing.get(entity_id)  # type: ignore[arg-type]
            if current is None:
                raise ResourceNotFound(f"entity {entity_id!r} not found")
            entity = _copy(current)
            applied = apply(entity, doc, now)
        except PlatformError as exc:
            result.fail(entity_id, exc)
            continue
        assert isinstance(entity_id, str)
        if applied.changed:
            writes[entity_id] = entity
            rows.extend(_rows(entity_id, applied, now, current, entity))
            changes.append(_change(tenant, entity, current, applied))
        if report_skipped and applied.skipped:
            names = ", ".join(ctx.compact(i) for i in applied.skipped)
            why = "they exist and noOverwrite was given, or a Null names no stored instance"
            result.fail(entity_id, BadRequestData(f"not updated ({why}): {names}"))
        elif entity_id not in result.success:
            result.success.append(entity_id)
    if writes:
        await broker.storage.write_entities(tenant, list(writes.values()), rows)
        broker.publish(changes)
    return result


async def purge(
    broker: ContextBroker,
    tenant: str,
    found: list[Entity],
    ctx: Context,
    *,
    keep: list[str] | None = None,
    drop: list[str] | None = None,
) -> int:
    """Purge Entities (DELETE /entities): delete the entities a selection found, or with
    ``drop`` only the attributes named, with ``keep`` every attribute but those named; the
    number of entities deleted or changed."""
    if keep is not None and drop is not None:
        raise BadRequestData("purge entities: keep and drop exclude each other")
    if not found:
        return 0
    names = keep if keep is not None else drop
    if names is not None:
        iris = {ctx.expand(ent.check_name(n, "attribute name")) for n in names}
        now = ent.now_iso()
        writes: list[Entity] = []
        changes: list[Change] = []
        for current in found:
            entity = _copy(current)
            attrs = entity["attrs"]
            gone = {i for i in attrs if (i not in iris) == (keep is not None)}
            if not gone:
                continue
            for iri in gone:
                del attrs[iri]
            entity["modifiedAt"] = now
            writes.append(entity)
            removed = frozenset(gone)
            changes.append(Change(tenant, entity, current, removed, removed=removed))
        if writes:
            await broker.storage.write_entities(tenant, writes, [])
            broker.publish(changes)
        return len(writes)
    deleted = await broker.storage.delete_entities(tenant, [e["id"] for e in found])
    broker.publish(
        [Change(tenant, e, e, frozenset(), deleted=True) for e in found if e["id"] in deleted]
    )
    return len(deleted)
