"""Temporal representation of entities (CIM 009 4.5.7, 4.5.9, 5.6.11-5.6.16, 5.7.3-5.7.4).

Every attribute instance the platform writes is also appended to the history (see
:func:`city_platform.broker.history_rows`); this module turns a temporal query's parameters into
a :class:`HistoryQuery`, renders history rows in the normalized, ``temporalValues`` (4.5.9) or
``aggregatedValues`` (4.5.19, :mod:`city_platform.temporal_aggr`) form, limits the instances of
an answer (6.3.10: 206 Partial Content with a ``Content-Range: date-time`` header), and writes
temporal payloads (arrays of instances) back.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from city_platform import entities as ent
from city_platform.broker import Change, ContextBroker, history_rows
from city_platform.errors import BadRequestData, ResourceNotFound
from city_platform.ldcontext import Context
from city_platform.search import EntitySearch
from city_platform.storage.base import HistoryQuery, HistoryRow
from city_platform.temporal_aggr import Aggregation, Window, aggregate_attribute, key_time, show

TimeProperty = Literal["observedAt", "modifiedAt", "createdAt", "deletedAt"]
Representation = Literal["normalized", "temporalValues", "aggregatedValues"]
Timerel = Literal["before", "after", "between"]
_TIMERELS: tuple[Timerel, ...] = ("before", "after", "between")
_TIMEPROPERTIES: tuple[TimeProperty, ...] = ("observedAt", "modifiedAt", "createdAt", "deletedAt")
MAX_LAST_N = 100_000
# The most instances per attribute (per entity) one answer holds (6.3.10); more are cut off
# and the answer is 206 Partial Content with the time range it covers in Content-Range.
INSTANCE_LIMIT = 1000
# The member that lists the values in the temporalValues form, per attribute type (4.5.9).
_VALUES_KEY = {
    "Property": "values",
    "GeoProperty": "values",
    "Relationship": "objects",
    "LanguageProperty": "languageMaps",
    "ListProperty": "valueLists",
    "ListRelationship": "objectLists",
    "JsonProperty": "jsons",
    "VocabProperty": "vocabs",
}


class HistoryPage(NamedTuple):
    """History rows per entity id, as one answer holds them (6.3.10)."""

    rows: dict[str, list[HistoryRow]]
    content_range: str | None = None  # set when instances were cut off: 206 Partial Content
    emptied: dict[str, dict[str, str]] = {}  # noqa: RUF012  # entity -> attribute -> type cut away


@dataclass(frozen=True)
class TimeFilter:
    timerel: Timerel | None = None
    time_at: str | None = None  # sortable UTC keys
    end_time_at: str | None = None
    last_n: int | None = None
    timeproperty: TimeProperty = "observedAt"

    def query(
        self,
        entity_ids: Iterable[str],
        attrs: frozenset[str] | None,
        instance_limit: int | None = None,
    ) -> HistoryQuery:
        """The storage query; with ``instance_limit`` it asks for one instance more than the
        limit, the newest with lastN, else the oldest (enough to know the answer is partial,
        6.3.10).  ``deletedAt``
        reads the rows by their write time; :func:`history_for` keeps the deletions and
        applies lastN to them."""
        last_n = self.last_n
        if last_n is not None and instance_limit is not None:
            last_n = min(last_n, instance_limit + 1)
        prop = self.timeproperty
        first_n = None if instance_limit is None else instance_limit + 1
        if prop == "deletedAt":
            prop, last_n, first_n = "modifiedAt", None, None
        return HistoryQuery(
            entity_ids=frozenset(entity_ids),
            attrs=attrs,
            timerel=self.timerel,
            time_at=self.time_at,
            end_time_at=self.end_time_at,
            timeproperty=prop,
            last_n=last_n,
            first_n=first_n,
        )

    def aggregation_window(self) -> Window:
        """Where aggregation periods start and a whole-range period ends (4.5.19)."""
        start = end = None
        if self.timerel in ("after", "between") and self.time_at is not None:
            start = key_time(self.time_at)
        if self.timerel == "between" and self.end_time_at is not None:
            end = key_time(self.end_time_at)
        elif self.timerel == "before" and self.time_at is not None:
            end = key_time(self.time_at)
        return Window(start, end)


def _time_key(text: str, name: str) -> str:
    ent.parse_datetime(text, name)
    return ent.utc_key(text)


def parse_time_filter(
    *,
    timerel: str | None,
    time_at: str | None,
    end_time_at: str | None,
    last_n: str | None,
    timeproperty: str | None,
) -> TimeFilter:
    """Validate the temporal query parameters (6.3.10 timerel, 6.3.11 lastN, timeproperty)."""
    rel: Timerel | None = None
    start = end = None
    if timerel is not None:
        rel = next((r for r in _TIMERELS if r == timerel), None)
        if rel is None:
            raise BadRequestData(f"timerel must be one of {', '.join(_TIMERELS)}, got {timerel!r}")
        if time_at is None:
            raise BadRequestData(f"timerel={timerel} needs timeAt")
        start = _time_key(time_at, "timeAt")
        if rel == "between":
            if end_time_at is None:
                raise BadRequestData("timerel=between needs endTimeAt")
            end = _time_key(end_time_at, "endTimeAt")
            if end <= start:
                raise BadRequestData("endTimeAt must be later than timeAt")
        elif end_time_at is not None:
            raise BadRequestData(f"endTimeAt is only allowed with timerel=between, not {rel}")
    elif time_at is not None or end_time_at is not None:
        raise BadRequestData("timeAt and endTimeAt need timerel")
    n = None
    if last_n is not None:
        try:
            n = int(last_n)
        except ValueError:
            raise BadRequestData(f"lastN must be a positive integer, got {last_n!r}") from None
        if not 0 < n <= MAX_LAST_N:
            raise BadRequestData(f"lastN must be between 1 and {MAX_LAST_N}, got {n}")
    prop: TimeProperty = "observedAt"
    if timeproperty is not None:
        found = next((p for p in _TIMEPROPERTIES if p == timeproperty), None)
        if found is None:
            raise BadRequestData(
                f"timeproperty must be one of {', '.join(_TIMEPROPERTIES)}, got {timeproperty!r}"
            )
        prop = found
    return TimeFilter(rel, start, end, n, prop)


def _row_key(row: HistoryRow, timeproperty: TimeProperty) -> str | None:
    return row.observed_at if timeproperty == "observedAt" else row.modified_at


def render_temporal(
    entity: ent.Entity,
    rows: list[HistoryRow],
    ctx: Context,
    *,
    representation: Representation = "normalized",
    sys_attrs: bool = False,
    time_filter: TimeFilter | None = None,
    aggregation: Aggregation | None = None,
    emptied: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An entity's temporal representation from its history rows (oldest first per attribute):
    normalized (4.5.7), ``temporalValues`` (4.5.9) or ``aggregatedValues`` (4.5.19)."""
    window = time_filter or TimeFilter()
    timeproperty = window.timeproperty
    types = [ctx.compact(t) for t in entity["type"]]
    out: dict[str, Any] = {"id": entity["id"], "type": types[0] if len(types) == 1 else types}
    if sys_attrs:
        out["createdAt"] = entity.get("createdAt")
        out["modifiedAt"] = entity.get("modifiedAt")
    by_attr: dict[str, list[HistoryRow]] = {}
    for row in rows:
        by_attr.setdefault(row.attr, []).append(row)
    keys = sorted(k for k in (_row_key(r, timeproperty) for r in rows) if k is not None)
    for iri, attr_rows in by_attr.items():
        name = ctx.compact(iri)
        if representation == "aggregatedValues" and aggregation is not None:
            out[name] = aggregate_attribute(
                attr_rows,
                aggregation,
                window.aggregation_window(),
                timeproperty=timeproperty,
                oldest=key_time(keys[0]),
                newest=key_time(keys[-1]),
            )
        elif representation == "temporalValues":
            out[name] = _simplified(attr_rows, timeproperty)
        else:
            out[name] = [_instance(r.instance, ctx, sys_attrs) for r in attr_rows]
    for iri, atype in (emptied or {}).items():  # cut away by the instance limit (6.3.10)
        key = _VALUES_KEY.get(atype, "values")
        out[ctx.compact(iri)] = {"type": atype, key: []} if representation != "normalized" else []
    return out


def _instance(inst: ent.Instance, ctx: Context, sys_attrs: bool) -> Any:
    """One instance of the normalized temporal form; a deletion shows its deletedAt always."""
    out = ent.render_instance(inst, ctx, "normalized", sys_attrs)
    if "deletedAt" in inst and isinstance(out, dict):
        out["deletedAt"] = inst["deletedAt"]
    return out


def _simplified(rows: list[HistoryRow], timeproperty: TimeProperty) -> Any:
    """The temporalValues form (4.5.9): per datasetId, [value, time] pairs."""
    groups: dict[str | None, dict[str, Any]] = {}
    for row in rows:
        inst = row.instance
        atype = inst.get("type", "Property")
        group = groups.get(row.dataset_id)
        if group is None:
            group = {"type": atype, _VALUES_KEY.get(atype, "values"): []}
            if row.dataset_id is not None:
                group["datasetId"] = row.dataset_id
            groups[row.dataset_id] = group
        when = inst.get(timeproperty) or (
            row.observed_at if timeproperty == "observedAt" else row.modified_at
        )
        group[_VALUES_KEY.get(atype, "values")].append([ent.instance_value(inst), when])
    items = list(groups.values())
    return items[0] if len(items) == 1 else items


def _instances(name: str, raw: object, ctx: Context, now: str) -> list[ent.Instance]:
    """A temporal attribute: an array of instances (several may share a datasetId)."""
    ent.check_name(name, "attribute name")
    if name in ("id", "type"):
        raise BadRequestData(f"{name!r} cannot be used as an attribute name")
    items = raw if isinstance(raw, list) else [raw]
    if not items:
        raise BadRequestData(f"attribute {name!r}: empty array of instances")
    return [ent.normalize_instance(name, item, ctx, now=now) for item in items]


def _latest(instances: list[ent.Instance]) -> list[ent.Instance]:
    """The newest instance per datasetId, which becomes the entity's current value."""
    best: dict[str | None, ent.Instance] = {}
    for inst in instances:
        ds = inst.get("datasetId")
        old = best.get(ds)
        key = ent.utc_key(inst["observedAt"]) if "observedAt" in inst else ""
        if old is None or key >= (ent.utc_key(old["observedAt"]) if "observedAt" in old else ""):
            best[ds] = inst
    return list(best.values())


async def write_temporal(
    broker: ContextBroker,
    tenant: str,
    doc: object,
    ctx: Context,
    *,
    entity_id: str | None = None,
) -> bool:
    """Create or update a temporal representation (5.6.11 / 5.6.12); True when created."""
    if not isinstance(doc, dict):
        raise BadRequestData("a temporal entity must be a JSON object")
    now = ent.now_iso()
    if entity_id is None:
        if "id" not in doc or "type" not in doc:
            raise BadRequestData("a temporal entity needs 'id' and 'type'")
        entity_id = ent.check_entity_id(doc["id"])
    history: dict[str, list[ent.Instance]] = {}
    for name, raw in doc.items():
        if name in ent.ENTITY_MEMBERS:
            continue
        history[ctx.expand(name)] = _instances(name, raw, ctx, now)
    current = (await broker.storage.get_entities(tenant, [entity_id])).get(entity_id)
    created = current is None
    if current is None:
        if "type" not in doc:
            raise ResourceNotFound(f"entity {entity_id!r} not found")
        entity: ent.Entity = {
            "id": entity_id,
            "type": ent.expand_types(doc["type"], ctx),
            "createdAt": now,
            "modifiedAt": now,
            "attrs": {},
        }
    else:
        entity = current
        if "type" in doc:
            for t in ent.expand_types(doc["type"], ctx):
                if t not in entity["type"]:
                    entity["type"].append(t)
    previous = None if created else copy.deepcopy(entity)
    latest = {iri: _latest(instances) for iri, instances in history.items()}
    ent.merge_attrs(entity, latest, now=now)
    rows = history_rows(entity_id, history, now)
    await broker.storage.write_entities(tenant, [entity], rows)
    broker.publish([Change(tenant, entity, previous, frozenset(history))])
    return created


async def history_for(
    broker: ContextBroker,
    tenant: str,
    entities: list[ent.Entity],
    time_filter: TimeFilter,
    attrs: Collection[str] | None,
    *,
    instance_limit: int | None = None,
) -> HistoryPage:
    """History rows per entity id for a page of entities, cut to ``instance_limit`` per
    attribute (6.3.10) when given."""
    if not entities:
        return HistoryPage({})
    query = time_filter.query(
        (e["id"] for e in entities),
        frozenset(attrs) if attrs is not None else None,
        instance_limit,
    )
    by_entity: dict[str, list[HistoryRow]] = {e["id"]: [] for e in entities}
    for row in await broker.storage.history(tenant, query):
        by_entity[row.entity_id].append(row)
    if time_filter.timeproperty == "deletedAt":
        by_entity = {k: _deletions(v, time_filter.last_n) for k, v in by_entity.items()}
    if instance_limit is None:
        return HistoryPage(by_entity)
    return paginate(by_entity, time_filter, instance_limit)


async def query_temporal(
    broker: ContextBroker,
    tenant: str,
    search: EntitySearch,
    time_filter: TimeFilter,
    *,
    limit: int,
    offset: int,
    count: bool,
    instance_limit: int | None,
) -> tuple[list[ent.Entity], HistoryPage, int | None]:
    """Query Temporal Evolution of Entities (5.7.4): the page of matching entities, their
    history (cut to ``instance_limit``, 6.3.10) and the total when ``count``.

    ``q`` is checked against the Attribute instances the temporal query selects (5.7.4.4),
    not against the current entity: a term holds when one instance in the window satisfies
    it.  The other filters (type, id, geo-query) apply to the entities as they are now.
    """
    attrs = search.where.attrs
    if search.q is None:
        found, total = await broker.storage.find_entities(
            tenant,
            search.where,
            predicate=search.predicate(),
            limit=limit,
            offset=offset,
            count=count,
        )
        page = await history_for(
            broker, tenant, found, time_filter, attrs, instance_limit=instance_limit
        )
        return found, page, total
    q = search.q
    rest = dataclasses.replace(search, q=None)
    candidates, _ = await broker.storage.find_entities(
        tenant, search.where, predicate=rest.predicate()
    )
    history = (await history_for(broker, tenant, candidates, time_filter, None)).rows
    matching = []
    for entity in candidates:
        windowed: dict[str, list[ent.Instance]] = {}
        for row in history[entity["id"]]:
            windowed.setdefault(row.attr, []).append(row.instance)
        if q.matches({**entity, "attrs": windowed}):
            matching.append(entity)
    found = matching[offset : offset + limit]
    rows = {
        e["id"]: [r for r in history[e["id"]] if attrs is None or r.attr in attrs] for e in found
    }
    total = len(matching) if count else None
    if instance_limit is not None:
        return found, paginate(rows, time_filter, instance_limit), total
    return found, HistoryPage(rows), total


def _deletions(rows: list[HistoryRow], last_n: int | None) -> list[HistoryRow]:
    """The rows recording a deletion (``deletedAt``), the last ``last_n`` per attribute."""
    kept = [r for r in rows if "deletedAt" in r.instance]
    if last_n is None:
        return kept
    by_attr: dict[str, list[HistoryRow]] = {}
    for row in kept:
        by_attr.setdefault(row.attr, []).append(row)
    return [r for attr_rows in by_attr.values() for r in attr_rows[-last_n:]]


def paginate(
    by_entity: dict[str, list[HistoryRow]], time_filter: TimeFilter, limit: int
) -> HistoryPage:
    """Cut the instances to at most ``limit`` per attribute of an entity (6.3.10).

    Without lastN the answer keeps the oldest instances: it ends at the earliest time at which
    an attribute reached the limit, and every attribute is cut there, so that the next request
    (``timerel=after&timeAt=<end>``) misses nothing.  With lastN it keeps the newest ones and
    ends, going back in time, at the latest such time.  ``Content-Range: date-time
    <start>-<end>/<size>`` names the range; the size is lastN, or ``*`` (unknown).  An
    attribute cut away entirely stays in the answer, empty (the ETSI suite's 020_14).
    """
    prop = time_filter.timeproperty
    groups: dict[tuple[str, str], list[str]] = {}
    for entity_id, rows in by_entity.items():
        for row in rows:
            key = _row_key(row, prop)
            if key is not None:
                groups.setdefault((entity_id, row.attr), []).append(key)
    full = [sorted(keys) for keys in groups.values() if len(keys) > limit]
    if not full:
        return HistoryPage(by_entity)
    newest_first = time_filter.last_n is not None
    if newest_first:
        cut = max(keys[-limit] for keys in full)
    else:
        cut = min(keys[limit - 1] for keys in full)
    kept: dict[str, list[HistoryRow]] = {}
    emptied: dict[str, dict[str, str]] = {}
    for entity_id, rows in by_entity.items():
        kept[entity_id] = [
            r
            for r in rows
            if (key := _row_key(r, prop)) is not None
            and (key >= cut if newest_first else key <= cut)
        ]
        left = {r.attr for r in kept[entity_id]}
        gone = {r.attr: r.instance.get("type", "Property") for r in rows if r.attr not in left}
        if gone:
            emptied[entity_id] = gone
    times = sorted(k for rows in kept.values() for r in rows if (k := _row_key(r, prop)))
    rel, at, end_at = time_filter.timerel, time_filter.time_at, time_filter.end_time_at
    if newest_first:
        start = at if rel == "before" else end_at if rel == "between" else times[-1]
        size = str(time_filter.last_n)
    else:
        start = at if rel in ("after", "between") else times[0]
        size = "*"
    assert start is not None
    content_range = f"date-time {show(key_time(start))}-{show(key_time(cut))}/{size}"
    return HistoryPage(kept, content_range, emptied)
