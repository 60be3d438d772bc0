"""Batch upserts merge into copies: documents the storage keeps are never changed in place."""

from __future__ import annotations

import copy
from pathlib import Path

from city_platform.broker import Change, ContextBroker
from city_platform.ldcontext import ContextResolver
from city_platform.storage.sqlite import SqliteStorage

ID = "urn:ngsi-ld:NoiseLevelObserved:noise-1"


def fragment(value: float, when: str) -> dict[str, object]:
    return {
        "id": ID,
        "type": "NoiseLevelObserved",
        "LAeq": {"type": "Property", "value": value, "observedAt": when, "unitCode": "2N"},
    }


async def test_batch_upserts_leave_earlier_documents_as_they_were(tmp_path: Path) -> None:
    """A change's entity (which notifications render later) stays as written by that change."""
    changes: list[Change] = []
    async with SqliteStorage(tmp_path / "p.db") as store:
        broker = ContextBroker(store)
        broker.add_listener(changes.extend)
        ctx = await ContextResolver(allow_remote=False).resolve(None)
        for n in range(3):
            batch = [fragment(40 + n, f"2026-01-01T00:00:0{n}Z")]
            await broker.batch_write("", batch, ctx, mode="upsert", replace=False)
        first = copy.deepcopy(changes[0].entity)
        await broker.batch_write(
            "", [fragment(50, "2026-01-01T00:00:09Z")], ctx, mode="upsert", replace=False
        )
        assert changes[0].entity == first
        values = [c.entity["attrs"][ctx.expand("LAeq")][0]["value"] for c in changes]
        assert values == [40, 41, 42, 50]
        stored = await store.get_entities("", [ID])
        assert stored[ID]["attrs"][ctx.expand("LAeq")][0]["value"] == 50
