"""The SQLite backend: persistence, schema versioning, atomic batches, history order."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest

from city_platform.broker import history_rows
from city_platform.errors import PlatformError
from city_platform.storage import checkpointer
from city_platform.storage.base import EntityFilter, HistoryQuery
from city_platform.storage.sqlite import SqliteStorage

NS = "https://example.org/"


def entity(n: int, value: int = 0, when: str = "2026-01-01T00:00:00Z") -> dict[str, object]:
    return {
        "id": f"urn:ngsi-ld:T:{n}",
        "type": [NS + "T"],
        "createdAt": when,
        "modifiedAt": when,
        "attrs": {NS + "v": [{"type": "Property", "value": value, "observedAt": when}]},
    }


async def test_entities_and_history_survive_reopening(tmp_path: Path) -> None:
    """What was written is there after the database is closed and opened again."""
    db = tmp_path / "p.db"
    async with SqliteStorage(db) as store:
        e = entity(1, 5)
        await store.write_entities(
            "city", [e], history_rows(e["id"], e["attrs"], "2026-01-01T00:00:00Z")
        )
    async with SqliteStorage(db) as store:
        got = await store.get_entities("city", ["urn:ngsi-ld:T:1"])
        assert got["urn:ngsi-ld:T:1"]["attrs"][NS + "v"][0]["value"] == 5
        rows = await store.history("city", HistoryQuery(entity_ids=frozenset({"urn:ngsi-ld:T:1"})))
        assert [r.instance["value"] for r in rows] == [5]
        assert await store.tenant_exists("city")


async def test_a_newer_schema_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    """A database written by a newer testbed is not silently misread."""
    db = tmp_path / "p.db"
    async with SqliteStorage(db):
        pass
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value='999' WHERE key='schema_version'")
    with pytest.raises(PlatformError, match="schema version 999"):
        async with SqliteStorage(db):
            pass


async def test_concurrent_batches_all_land(tmp_path: Path) -> None:
    """Many concurrent batch writes each commit completely (WAL, one writer at a time)."""
    async with SqliteStorage(tmp_path / "p.db") as store:

        async def write(start: int) -> None:
            batch = [entity(n, n) for n in range(start, start + 50)]
            await store.write_entities("", batch, [])

        await asyncio.gather(*(write(k * 50) for k in range(20)))
        found, total = await store.find_entities("", EntityFilter(), limit=None, count=True)
        assert total == 1000
        assert len({e["id"] for e in found}) == 1000


async def test_last_n_returns_the_newest_in_time_order(tmp_path: Path) -> None:
    """lastN picks the newest N instances by observedAt and returns them oldest first."""
    async with SqliteStorage(tmp_path / "p.db") as store:
        e = entity(1)
        for minute in (3, 1, 4, 2, 0):
            when = f"2026-01-01T00:0{minute}:00Z"
            attrs = {NS + "v": [{"type": "Property", "value": minute, "observedAt": when}]}
            await store.write_entities("", [e], history_rows(e["id"], attrs, when))
        query = HistoryQuery(entity_ids=frozenset({e["id"]}), last_n=3)
        rows = await store.history("", query)
        assert [r.instance["value"] for r in rows] == [2, 3, 4]


async def test_first_n_returns_the_oldest_per_attribute(tmp_path: Path) -> None:
    """first_n (the temporal instance limit, CIM 009 6.3.10) keeps the oldest N by
    observedAt of each attribute; lastN wins when both are given."""
    async with SqliteStorage(tmp_path / "p.db") as store:
        e = entity(1)
        for minute in (3, 1, 4, 2, 0):
            when = f"2026-01-01T00:0{minute}:00Z"
            attrs = {
                NS + name: [{"type": "Property", "value": minute, "observedAt": when}]
                for name in ("v", "w")
            }
            await store.write_entities("", [e], history_rows(e["id"], attrs, when))
        query = HistoryQuery(entity_ids=frozenset({e["id"]}), first_n=2)
        rows = await store.history("", query)
        assert [(r.attr, r.instance["value"]) for r in rows] == [
            (NS + "v", 0), (NS + "v", 1), (NS + "w", 0), (NS + "w", 1)
        ]  # fmt: skip
        both = HistoryQuery(entity_ids=frozenset({e["id"]}), attrs=frozenset({NS + "v"}),
                            first_n=2, last_n=1)  # fmt: skip
        assert [r.instance["value"] for r in await store.history("", both)] == [4]


async def test_a_failed_batch_writes_nothing(tmp_path: Path) -> None:
    """A batch that fails half-way is rolled back as a whole."""
    async with SqliteStorage(tmp_path / "p.db") as store:
        bad = entity(2)
        bad["attrs"] = {NS + "v": [{"value": object()}]}  # not serializable
        with pytest.raises(TypeError):
            await store.write_entities("", [entity(1), bad], [])
        assert await store.get_entities("", ["urn:ngsi-ld:T:1"]) == {}


async def test_the_write_ahead_log_stays_bounded_under_steady_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Commits leave checkpoints to a thread of their own; under writes without a pause the
    log is still started over instead of growing, and everything written is there after."""
    monkeypatch.setattr(checkpointer, "RESTART_FRAMES", 200)
    monkeypatch.setattr(checkpointer, "CAUGHT_UP_FRAMES", 50)
    monkeypatch.setattr(checkpointer, "INTERVAL", 0.01)
    db = tmp_path / "p.db"
    async with SqliteStorage(db) as store:
        assert store.db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        for batch in range(300):
            es = [entity(n, batch) for n in range(50)]
            when = "2026-01-01T00:00:00Z"
            await store.write_entities(
                "", es, [r for e in es for r in history_rows(e["id"], e["attrs"], when)]
            )
            await asyncio.sleep(0.002)  # the platform's writes come with gaps between them
        # The log file keeps the size of its longest run (4 KiB pages + 24-byte frame headers);
        # 300 batches write several thousand frames.
        longest = (tmp_path / "p.db-wal").stat().st_size // (4096 + 24)
    assert longest < 2000
    async with SqliteStorage(db) as store:
        query = HistoryQuery(entity_ids=frozenset({"urn:ngsi-ld:T:7"}))
        assert [r.instance["value"] for r in await store.history("", query)] == list(range(300))


def _value(doc: dict[str, object]) -> object:
    attrs = doc["attrs"]
    assert isinstance(attrs, dict)
    return attrs[NS + "v"][0]["value"]


async def test_shared_reads_see_what_another_connection_wrote(tmp_path: Path) -> None:
    """The documents kept for batch upserts are dropped when another process writes the file."""
    db = tmp_path / "p.db"
    async with SqliteStorage(db) as store:
        await store.write_entities("", [entity(1, 5)], [])
        assert _value((await store.get_entities("", ["urn:ngsi-ld:T:1"], shared=True))
                      ["urn:ngsi-ld:T:1"]) == 5  # fmt: skip
        other = sqlite3.connect(db)  # a second platform on the same file
        other.execute(
            "UPDATE entities SET doc=? WHERE id=?",
            (json.dumps(entity(1, 7)), "urn:ngsi-ld:T:1"),
        )
        other.commit()
        other.close()
        got = await store.get_entities("", ["urn:ngsi-ld:T:1"], shared=True)
        assert _value(got["urn:ngsi-ld:T:1"]) == 7


async def test_shared_reads_follow_this_connections_writes_and_deletes(tmp_path: Path) -> None:
    """A shared read gives the last written document, and nothing once it is deleted."""
    async with SqliteStorage(tmp_path / "p.db") as store:
        await store.write_entities("", [entity(1, 5), entity(2, 1)], [])
        await store.get_entities("", ["urn:ngsi-ld:T:1", "urn:ngsi-ld:T:2"], shared=True)
        await store.write_entities("", [entity(1, 6)], [])
        await store.delete_entities("", ["urn:ngsi-ld:T:2"])
        got = await store.get_entities("", ["urn:ngsi-ld:T:1", "urn:ngsi-ld:T:2"], shared=True)
        assert list(got) == ["urn:ngsi-ld:T:1"]
        assert _value(got["urn:ngsi-ld:T:1"]) == 6
        unshared = await store.get_entities("", ["urn:ngsi-ld:T:1"])
        assert unshared == got
        assert unshared["urn:ngsi-ld:T:1"] is not got["urn:ngsi-ld:T:1"]  # a copy of its own
