"""Context information provision beyond create/delete: merge, update, partial update, replace
attribute, batch merge and purge, with the NGSI-LD Null (ETSI GS CIM 009 V1.8.1 clause 5.6).

The NGSI-LD Null (the string ``urn:ngsi-ld:null``, CIM 009 4.5 / 5.2.1) only means something
in the fragments of the operations that change part of an entity:

- Update Entity Attributes (5.6.2): an Attribute whose value is Null deletes that instance
  (the one of the fragment's datasetId); a Null sub-attribute is left out of the new instance.
- Partial Attribute Update (5.6.4) and Merge Entity (5.6.17, 5.6.20 per entity): the fragment
  is merged into the stored instance (members it names replace those stored, others are
  kept, observedAt and unitCode too); a Null value deletes the instance, a Null
  sub-attribute or a Null observedAt/unitCode deletes that member.
- Merge Entity only (5.5.4: "inside a JSON object that is a Property's value" only in a
  merge fragment): a Property value that is a JSON object is merged by the rules of
  IETF RFC 7396, so a Null key deletes that key.
- Everywhere else (create, replace, append, batch create/upsert) a Null is BadRequestData
  (5.2.1), checked by :func:`city_platform.entities.normalize_instance`.

Null forms of the value member per attribute type: ``value``/``object``/``json``/``vocab``
Null, a ``languageMap`` of ``{"@none": Null}`` (4.5.18), a ``valueList``/``objectList`` of
``[Null]``.  A datasetId cannot be deleted with Null (5.5.8).

Scope (4.18): the fragment's scopes replace the entity's in append, update and merge; an
append with ``noOverwrite`` adds them instead (as the ETSI suite, 010_07, expects); a Null
scope in update or merge removes the scope.  Entity types (4.5.1) named in an
append, update or merge fragment are added to the entity's types (only replace removes one).
"""

from __future__ import annotations

from typing import Any, Literal

from city_platform import entities as ent
from city_platform.broker import BatchResult, Change, ContextBroker, _copy, history_rows
from city_platform.errors import BadRequestData, PlatformError, ResourceNotFound
from city_platform.ldcontext import Context
from city_platform.query.scope import normalize_scope
from city_platform.query.typeexpr import parse_type_selection
from city_platform.storage.base import Entity, HistoryRow

NULL = "urn:ngsi-ld:null"
_VALUE_KEYS = frozenset(ent.VALUE_KEY.values())
# Members of an entity fragment that are not attributes.
_NOT_ATTRS = frozenset({"id", "type", "@context", "scope", "createdAt", "modifiedAt"})

Mode = Literal["append", "update", "merge"]


def is_null(value: object) -> bool:
    return isinstance(value, str) and value == NULL


def is_null_value(key: str, value: object) -> bool:
    """Whether ``value`` is the NGSI-LD Null form of the value member ``key``."""
    if is_null(value):
        return True
    if key == "languageMap":
        return isinstance(value, dict) and len(value) == 1 and is_null(value.get("@none"))
    if key in ("valueList", "objectList"):
        return isinstance(value, list) and len(value) == 1 and is_null(value[0])
    return False


def is_null_instance(raw: object) -> bool:
    """An attribute instance of a fragment that asks for its deletion (Null value)."""
    if is_null(raw):
        return True
    if not isinstance(raw, dict):
        return False
    return any(is_null_value(k, raw[k]) for k in _VALUE_KEYS if k in raw)


def merge_patch(target: object, patch: object) -> Any:
    """IETF RFC 7396 applied to a JSON value, with the NGSI-LD Null as the deleting null."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, item in patch.items():
        if is_null(item):
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), item)
    return out


def raw_instances(name: str, raw: object) -> list[Any]:
    """The instances of one attribute of a fragment (one, or an array with datasetIds)."""
    if (
        isinstance(raw, list)
        and raw
        and all(isinstance(i, dict) for i in raw)
        and all(ent._looks_normalized(i) or is_null_instance(i) for i in raw)
    ):
        return list(raw)
    return [raw]


def _dataset(name: str, raw: object) -> str | None:
    if not isinstance(raw, dict):
        return None
    ds = raw.get("datasetId")
    if ds is None or ds == "@none":
        return None
    if is_null(ds):
        raise BadRequestData(f"attribute {name!r}: a datasetId cannot be deleted with Null (5.5.8)")
    return ent.check_uri(ds, f"attribute {name!r}: datasetId")


def _as_normalized(raw: object) -> dict[str, Any]:
    """A concise instance (4.5.3) in normalized form; a normalized one as it is."""
    if isinstance(raw, dict) and (ent._looks_normalized(raw) or is_null_instance(raw)):
        return dict(raw)
    if isinstance(raw, dict) and raw.get("type") in ent.GEO_TYPES and "coordinates" in raw:
        return {"type": "GeoProperty", "value": raw}
    return {"type": "Property", "value": raw}


def _strip_nulls(raw: dict[str, Any], *, merge: bool) -> dict[str, Any]:
    """A new instance from a fragment: Null members and sub-attributes left out; in a merge
    (``merge``) also the Null keys of a JSON object value (5.5.12), elsewhere those stay for
    normalize_instance to refuse (5.5.4)."""
    out: dict[str, Any] = {}
    for key, item in raw.items():
        if key in _VALUE_KEYS:
            out[key] = merge_patch(None, item) if merge and isinstance(item, dict) else item
        elif key in ent.RESERVED:
            if not is_null(item):
                out[key] = item
        elif not is_null_instance(item):
            out[key] = _strip_nulls(_as_normalized(item), merge=merge)
    return out


def new_instance(name: str, raw: object, ctx: Context, now: str, *, merge: bool) -> Any:
    """A fragment's instance of an attribute not stored yet, Nulls left out."""
    return ent.normalize_instance(
        name, _strip_nulls(_as_normalized(raw), merge=merge), ctx, now=now
    )


def merge_instance(
    name: str,
    old: ent.Instance,
    raw: object,
    ctx: Context,
    now: str,
    *,
    patch_values: bool,
    sub: bool = False,
) -> ent.Instance:
    """Merge a fragment's instance into the stored one (5.6.4, 5.6.17).

    Members the fragment names replace the stored ones, the others are kept; a Null member or
    sub-attribute is deleted; with ``patch_values`` a JSON object value is merged (RFC 7396).
    A different attribute type replaces the value member."""
    frag = _as_normalized(raw)
    old_type = old.get("type", "Property")
    atype = frag.get("type", old_type)
    if atype not in ent.ATTR_TYPES:
        raise BadRequestData(f"attribute {name!r}: unknown attribute type {atype!r}")
    key = ent.VALUE_KEY[atype]
    deleted: list[str] = []
    clean: dict[str, Any] = {"type": atype}
    for member, item in frag.items():
        if member in ("type", key):
            continue
        if member in ent.RESERVED:
            if is_null(item):
                deleted.append(member)
            else:
                clean[member] = item
        elif is_null_instance(item):
            deleted.append(ctx.expand(ent.check_name(member, f"attribute {name!r}: sub-attribute")))
        else:
            clean[member] = item
    old_value = old.get(key) if atype == old_type else None
    if key in frag:
        value = frag[key]
        if patch_values and atype == "Property" and isinstance(value, dict):
            is_geo = value.get("type") in ent.GEO_TYPES
            value = merge_patch(None if is_geo else old_value, value)
        elif patch_values and isinstance(value, dict) and atype == "JsonProperty":
            value = merge_patch(None, value)
        # Outside a merge a Null inside a value stays, and is refused (5.5.4).
        clean[key] = value
    elif atype == old_type:
        clean[key] = old_value
    else:
        raise BadRequestData(f"attribute {name!r}: a new type {atype!r} needs its {key!r}")
    # Sub-attributes already stored merge recursively; the others are new.
    subs: dict[str, Any] = {}
    for member in list(clean):
        if member in ent.RESERVED:
            continue
        sub_name = ent.check_name(member, f"attribute {name!r}: sub-attribute")
        iri = ctx.expand(sub_name)
        stored = old.get(iri)
        if isinstance(stored, dict):
            subs[iri] = merge_instance(
                sub_name, stored, clean.pop(member), ctx, now, patch_values=patch_values, sub=True
            )
        else:
            clean[member] = _strip_nulls(_as_normalized(clean[member]), merge=patch_values)
    norm = ent.normalize_instance(name, clean, ctx, now=now, sub=sub)
    if atype == old_type:
        merged = dict(old)
    else:
        merged = {k: v for k, v in old.items() if k not in _VALUE_KEYS}
    for member, item in norm.items():
        if member not in ent.SYSTEM:
            merged[member] = item
    merged.update(subs)
    for member in deleted:
        merged.pop(member, None)
    merged["createdAt"] = old.get("createdAt", now)
    merged["modifiedAt"] = now
    return merged


class _Applied:
    """What applying a fragment to one entity did: the instances written, per IRI, and the
    IRIs of attributes of which instances were deleted; ``skipped`` for the UpdateResult."""

    def __init__(self) -> None:
        self.written: dict[str, list[ent.Instance]] = {}
        self.removed: set[str] = set()
        self.updated: list[str] = []
        self.skipped: list[str] = []
        self.other = False  # scope or types changed

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed or self.other)


def _apply_types(entity: Entity, doc: dict[str, Any], ctx: Context, applied: _Applied) -> None:
    if "type" not in doc:
        return
    types = ent.expand_types(doc["type"], ctx)
    merged = list(dict.fromkeys([*entity["type"], *types]))
    if merged != entity["type"]:
        entity["type"] = merged
        applied.other = True


def _apply_scope(
    entity: Entity, doc: dict[str, Any], mode: Mode, applied: _Applied, *, overwrite: bool
) -> None:
    """4.18 with 5.6.2 / 5.6.3 / 5.6.17: the fragment's scopes replace the entity's, but an
    append with noOverwrite adds them (ETSI 010_07); a Null scope removes them (not in
    append)."""
    if "scope" not in doc:
        return
    if mode == "update" and "scope" not in entity:
        # 5.6.2 updates what exists: no scope is added (ETSI 011_05_02), it is notUpdated.
        if not is_null(doc["scope"]):
            normalize_scope(doc["scope"])  # still checked: a bad scope is 400
        applied.skipped.append("scope")
        return
    raw = doc["scope"]
    if is_null(raw) and mode != "append":
        if "scope" in entity:
            del entity["scope"]
            applied.other = True
        return
    scopes = normalize_scope(raw)
    if mode == "append" and not overwrite:
        scopes = list(dict.fromkeys([*entity.get("scope", []), *scopes]))
    if scopes != entity.get("scope"):
        entity["scope"] = scopes
        applied.other = True


def apply_fragment(
    entity: Entity,
    doc: object,
    ctx: Context,
    now: str,
    *,
    mode: Mode,
    overwrite: bool = True,
) -> _Applied:
    """Apply an entity fragment to ``entity`` in place: append (5.6.3), update (5.6.2) or
    merge (5.6.17)."""
    if not isinstance(doc, dict):
        raise BadRequestData("the request body must be a JSON object (an entity fragment)")
    applied = _Applied()
    _apply_types(entity, doc, ctx, applied)
    _apply_scope(entity, doc, mode, applied, overwrite=overwrite)
    attrs = entity["attrs"]
    for name, raw in doc.items():
        if name in _NOT_ATTRS:
            continue
        ent.check_name(name, "attribute name")
        iri = ctx.expand(name)
        instances = raw_instances(name, raw)
        stored = list(attrs.get(iri, []))
        touched = False
        if mode == "append":
            if any(is_null_instance(i) for i in instances):
                raise BadRequestData(
                    f"attribute {name!r}: the NGSI-LD Null deletes only in update and merge"
                )
            new = ent.normalize_attribute(name, raw, ctx, now=now)
            for inst in new:
                ds = inst.get("datasetId")
                idx = next((n for n, o in enumerate(stored) if o.get("datasetId") == ds), -1)
                if idx >= 0 and not overwrite:
                    continue
                if idx >= 0:
                    inst["createdAt"] = stored[idx].get("createdAt", now)
                    stored[idx] = inst
                else:
                    stored.append(inst)
                applied.written.setdefault(iri, []).append(inst)
                touched = True
        else:
            seen: set[str | None] = set()
            for item in instances:
                ds = _dataset(name, item)
                if ds in seen:
                    raise BadRequestData(f"attribute {name!r}: datasetId {ds!r} appears twice")
                seen.add(ds)
                idx = next((n for n, o in enumerate(stored) if o.get("datasetId") == ds), -1)
                if is_null_instance(item):
                    if idx >= 0:
                        del stored[idx]
                        applied.removed.add(iri)
                        touched = True
                    continue
                if idx < 0:
                    if mode == "update" and not stored:
                        continue  # 5.6.2: only existing attributes are updated
                    # A new datasetId of an existing attribute is added (5.5.8).
                    inst = new_instance(name, item, ctx, now, merge=mode == "merge")
                    stored.append(inst)
                elif mode == "update":
                    inst = new_instance(name, item, ctx, now, merge=False)
                    inst["createdAt"] = stored[idx].get("createdAt", now)
                    stored[idx] = inst
                else:
                    inst = merge_instance(name, stored[idx], item, ctx, now, patch_values=True)
                    stored[idx] = inst
                applied.written.setdefault(iri, []).append(inst)
                touched = True
        if touched:
            if stored:
                attrs[iri] = stored
            else:
                attrs.pop(iri, None)
            applied.updated.append(iri)
        else:
            applied.skipped.append(iri)
    if applied.changed:
        entity["modifiedAt"] = now
    return applied


def check_type(entity: Entity, selection: str | None, ctx: Context) -> None:
    """The optional entity type selector of 5.6.2, 5.6.3 and 5.6.4 (4.17): an entity not of
    that type is not found."""
    if selection is None:
        return
    parsed = parse_type_selection(selection, ctx)
    if parsed is not None and not parsed.matches(entity["type"]):
        raise ResourceNotFound(f"entity {entity['id']!r} is not of type {selection!r}")


def _rows(entity_id: str, applied: _Applied, now: str) -> list[HistoryRow]:
    return history_rows(entity_id, applied.written, now)


def _change(tenant: str, entity: Entity, previous: Entity, applied: _Applied) -> Change:
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
        await broker.storage.write_entities(tenant, [entity], _rows(entity_id, applied, now))
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
    dataset = _dataset(attr, doc)
    instances, idx = _find_instance(entity, iri, attr, dataset)
    now = ent.now_iso()
    applied = _Applied()
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
    await broker.storage.write_entities(tenant, [entity], _rows(entity_id, applied, now))
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
    applied = _Applied()
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
            apply_fragment({"id": entity_id, "type": [], "attrs": {}}, doc, ctx, now, mode="merge")
            current = writes.get(entity_id) or existing.get(entity_id)  # type: ignore[arg-type]
            if current is None:
                raise ResourceNotFound(f"entity {entity_id!r} not found")
            entity = _copy(current)
            applied = apply_fragment(entity, doc, ctx, now, mode="merge")
        except PlatformError as exc:
            result.fail(entity_id, exc)
            continue
        assert isinstance(entity_id, str)
        if applied.changed:
            writes[entity_id] = entity
            rows.extend(_rows(entity_id, applied, now))
            changes.append(_change(tenant, entity, current, applied))
        if entity_id not in result.success:
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
