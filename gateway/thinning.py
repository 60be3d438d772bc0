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
DEVICE_CLOCK = "dateLastValueReported"


def _fingerprint(attrs: dict[str, Any]) -> dict[str, Any]:
    """What must change for the attributes to be due again (compared with ==, no encoding)."""
    return {
        k: {m: v for m, v in a.items() if m != "observedAt"} if isinstance(a, dict) else a
        for k, a in attrs.items()
        if k != DEVICE_CLOCK
    }


class Thinning:
    def __init__(self, refresh: float = 60.0) -> None:
        self.refresh = refresh
        self._sent: dict[str, tuple[float, dict[str, Any]]] = {}

    def _due(self, key: str, attrs: dict[str, Any], now: float) -> bool:
        mark = _fingerprint(attrs)
        last = self._sent.get(key)
        if last is not None and last[1] == mark and now - last[0] < self.refresh:
            return False
        self._sent[key] = (now, mark)
        return True

    def thin(self, entities: list[dict[str, Any]], now: float) -> list[dict[str, Any]]:
        """The entity documents to send for one reading, static parts only when due."""
        out: list[dict[str, Any]] = []
        for doc in entities:
            if doc.get("type") == "Device":
                attrs = {k: v for k, v in doc.items() if k not in ("id", "type")}
                if self._due(doc["id"], attrs, now):
                    out.append(doc)
                continue
            static = {k: doc[k] for k in STATIC_ATTRS if k in doc}
            if static and not self._due(doc["id"], static, now):
                out.append({k: v for k, v in doc.items() if k not in STATIC_ATTRS})
            else:
                out.append(doc)
        return out
