"""Sending what does not change less often: the ingestion hot path's biggest saving.

A reading normalizes to its measurements plus attributes that rarely change: ``refDevice``,
``location`` and the whole ``Device`` entity (protocol, address, category,
``dateLastValueReported``).  Writing those with every reading would triple the platform's work,
so they are sent with a device's first reading, whenever they change, and otherwise at most once
per ``refresh`` seconds (which is then the resolution of ``dateLastValueReported``).
"""

from __future__ import annotations

from typing import Any

STATIC_ATTRS = ("refDevice", "location")
_STATIC = frozenset(STATIC_ATTRS)
DEVICE_CLOCK = "dateLastValueReported"


def _same(new: dict[str, Any], old: dict[str, Any]) -> bool:
    """``new`` equals ``old`` but for the clocks (``observedAt``, ``dateLastValueReported``).

    Compared in place, without building copies: this runs for every reading."""
    if len(new) != len(old):
        return False
    for key, a in new.items():
        b = old.get(key)
        if a is b or key == DEVICE_CLOCK:  # the normalizer shares what a device repeats
            continue
        if a == b:
            continue
        if not isinstance(a, dict) or not isinstance(b, dict) or a.keys() != b.keys():
            return False
        for member, value in a.items():
            if member != "observedAt" and value != b[member]:
                return False
    return True


class Thinning:
    def __init__(self, refresh: float = 60.0) -> None:
        self.refresh = refresh
        self._sent: dict[str, tuple[float, dict[str, Any]]] = {}

    def _due(self, key: str, attrs: dict[str, Any], now: float) -> bool:
        last = self._sent.get(key)
        if last is not None and now - last[0] < self.refresh and _same(attrs, last[1]):
            return False
        self._sent[key] = (now, attrs)  # documents are not changed once normalized
        return True

    def thin(self, entities: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """The entity documents to send for one reading, static parts only when due."""
        out: list[dict[str, Any]] = []
        for doc in entities:
            if doc.get("type") == "Device":
                if self._due(doc["id"], doc, now):
                    out.append(doc)
                continue
            if _STATIC.isdisjoint(doc):
                out.append(doc)
                continue
            static = {k: doc[k] for k in STATIC_ATTRS if k in doc}
            if self._due(doc["id"], static, now):
                out.append(doc)
                continue
            thinned = dict(doc)
            for key in STATIC_ATTRS:
                thinned.pop(key, None)
            out.append(thinned)
        return out
