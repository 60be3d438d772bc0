"""A history instance written twice is stored once: what a backend compares, and the filter.

MQTT QoS 1 delivers at least once: a gateway that dies after queueing a reading but before its
PUBACK gets the reading again (MQTT 5 4.3.2), from its own session or, in a shared
subscription, possibly through another member (MQTT 5 4.8.2); an uplink that dies between the
platform's answer and marking the batch sent posts the batch again.  Each such repeat would be
a second temporal instance of one reading (issue 19: 20,850 instances for 20,000 readings).

A repeat is an instance of the same series (entity, attribute, datasetId) with the same
observedAt and the same content apart from what the platform adds when it stores it
(instanceId, createdAt, modifiedAt: CIM 009 4.5.7, 4.8).  A different value for the same
observedAt is new data (a correction) and kept; instances without observedAt (Relationships,
deletion records) are always kept.  Every backend applies :func:`drop_repeats` in its history
write, inside the write's transaction, against what it has stored for those keys.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from city_platform.storage.base import HistoryRow

ADDED_BY_STORAGE = frozenset({"instanceId", "createdAt", "modifiedAt"})


def content(instance: Mapping[str, Any]) -> dict[str, Any]:
    """What a repeat has in common with the stored instance: all but the platform's members."""
    return {k: v for k, v in instance.items() if k not in ADDED_BY_STORAGE}


def drop_repeats(
    keys: Sequence[Hashable | None],
    rows: Sequence[HistoryRow],
    stored: Mapping[Any, list[dict[str, Any]]],
) -> list[int]:
    """Indexes of the rows to write.  ``keys[i]`` is row i's (series, observedAt) key in the
    backend's terms, None for a row without observedAt; ``stored`` has the stored instances'
    documents of the keys that have any.  A repeat within ``rows`` is dropped too."""
    keep: list[int] = []
    # The instances at each key so far (stored, then kept here), compared only when a key has
    # some: most keys are new, and building a copy of every row cost 1 us.
    seen: dict[Hashable, list[Mapping[str, Any]]] = {}
    for i, (key, row) in enumerate(zip(keys, rows, strict=True)):
        if key is None:
            keep.append(i)
            continue
        known = seen.get(key)
        if known is None:
            known = seen[key] = list(stored.get(key, ()))
        if known:
            mine = content(row.instance)
            if any(content(doc) == mine for doc in known):
                continue
        known.append(row.instance)
        keep.append(i)
    return keep
