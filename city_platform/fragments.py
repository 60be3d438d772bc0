"""Entity fragments applied to stored entities: append, update, partial update and merge with
the NGSI-LD Null (ETSI GS CIM 009 V1.8.1 clause 5.6).  Pure functions, no I/O; the operations
that read and write (:mod:`city_platform.provision`) call them.

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
  IETF RFC 7396, so a Null key deletes that key; in update and partial update such a Null
  is BadRequestData.
- Everywhere else (create, replace, append, batch create/upsert) a Null is BadRequestData
  (5.2.1), checked by :func:`city_platform.entities.normalize_instance`.

Null forms of the value member per attribute type: ``value``/``object``/``json``/``vocab``
Null, a ``languageMap`` of ``{"@none": Null}`` (4.5.18), a ``valueList``/``objectList`` of
``[Null]``.  A datasetId cannot be deleted with Null (5.5.8).

Scope (4.18): the fragment's scopes replace the entity's in append, update and merge; an
append with ``noOverwrite`` adds them instead (as the ETSI suite, 010_07, expects); a Null
scope in update or merge removes the scope, and update adds no scope to an entity without
one (it is reported not updated, ETSI 011_05_02).  Entity types (4.5.1) named in an
append, update or merge fragment are added to the entity's types (only replace removes one).
"""

from __future__ import annotations

from typing import Any, Literal

from city_platform import entities as ent
from city_platform.errors import BadRequestData
from city_platform.ldcontext import Context
from city_platform.query.scope import normalize_scope
from city_platform.storage.base import Entity

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


def dataset_id(name: str, raw: object) -> str | None:
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


class Applied:
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


def _apply_types(entity: Entity, doc: dict[str, Any], ctx: Context, applied: Applied) -> None:
    if "type" not in doc:
        return
    types = ent.expand_types(doc["type"], ctx)
    merged = list(dict.fromkeys([*entity["type"], *types]))
    if merged != entity["type"]:
        entity["type"] = merged
        applied.other = True


def _apply_scope(
    entity: Entity,
    doc: dict[str, Any],
    mode: Mode,
    applied: Applied,
    *,
    overwrite: bool,
    null_deletes: bool = False,
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
    if is_null(raw) and (mode != "append" or null_deletes):
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
    null_deletes: bool = False,
) -> Applied:
    """Apply an entity fragment to ``entity`` in place: append (5.6.3), update (5.6.2) or
    merge (5.6.17).  ``null_deletes``: in an append, a Null instance deletes the stored one of
    its datasetId as in 5.6.2 instead of being refused (Batch Entity Update, 5.6.9)."""
    if not isinstance(doc, dict):
        raise BadRequestData("the request body must be a JSON object (an entity fragment)")
    applied = Applied()
    _apply_types(entity, doc, ctx, applied)
    _apply_scope(entity, doc, mode, applied, overwrite=overwrite, null_deletes=null_deletes)
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
            nulls = [i for i in instances if is_null_instance(i)]
            if nulls and not null_deletes:
                raise BadRequestData(
                    f"attribute {name!r}: the NGSI-LD Null deletes only in update and merge"
                )
            for item in nulls:  # 5.6.9 with 5.6.2: a Null instance deletes that instance
                ds = dataset_id(name, item)
                idx = next((n for n, o in enumerate(stored) if o.get("datasetId") == ds), -1)
                if idx >= 0:
                    del stored[idx]
                    applied.removed.add(iri)
                    touched = True
            rest = [i for i in instances if not is_null_instance(i)]
            if not rest:
                new = []
            elif nulls:
                new = ent.normalize_attribute(name, rest, ctx, now=now)
            else:
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
                ds = dataset_id(name, item)
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
