"""History by series (schema version 2): migration from version 1, series ids, time keys."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import orjson
import pytest

from city_platform.storage import series
from city_platform.storage.base import HistoryQuery, HistoryRow
from city_platform.storage.sqlite import SqliteStorage

NS = "https://example.org/"
E1, E2 = "urn:ngsi-ld:T:1", "urn:ngsi-ld:T:2"
DS = "urn:ngsi-ld:dataset:b"

# The version 1 layout as the platform created it until schema version 2.
V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tenants (name TEXT PRIMARY KEY);
CREATE TABLE entities (seq INTEGER PRIMARY KEY, tenant TEXT NOT NULL, id TEXT NOT NULL,
    types TEXT NOT NULL, doc BLOB NOT NULL, UNIQUE (tenant, id));
CREATE TABLE history (tenant TEXT NOT NULL, entity_id TEXT NOT NULL, attr TEXT NOT NULL,
    dataset_id TEXT, observed_at TEXT, modified_at TEXT NOT NULL, instance_id TEXT NOT NULL,
    doc BLOB NOT NULL);
CREATE INDEX history_by_time ON history (tenant, entity_id, attr, observed_at);
CREATE TABLE subscriptions (tenant TEXT NOT NULL, id TEXT NOT NULL, doc BLOB NOT NULL,
    PRIMARY KEY (tenant, id));
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO tenants VALUES ('city');
"""


def key(second: int) -> str:
    return f"2026-01-01T00:00:{second:02d}.000000Z"


def row(entity: str, attr: str, second: int | None, n: int, ds: str | None = None) -> HistoryRow:
    observed = None if second is None else key(second)
    instance = {"type": "Property", "value": n, "instanceId": f"urn:i:{n}"}
    return HistoryRow(entity, NS + attr, ds, observed, key(59), f"urn:i:{n}", instance)


# Written in this order: equal times keep it, the Relationship has no observedAt, and two
# datasets of one attribute merge into one time-ordered list.
ROWS = [
    row(E1, "v", 3, 1),
    row(E1, "v", 1, 2),
    row(E1, "v", 3, 3),
    row(E1, "v", 2, 4, DS),
    row(E1, "ref", None, 5),
    row(E2, "v", 7, 6),
]


def write_v1(path: Path, rows: list[HistoryRow], tenant: str = "city") -> None:
    with sqlite3.connect(path) as db:
        db.executescript(V1)
        db.executemany(
            "INSERT INTO history VALUES (?,?,?,?,?,?,?,?)",
            [
                (tenant, r.entity_id, r.attr, r.dataset_id, r.observed_at, r.modified_at,
                 r.instance_id, orjson.dumps(r.instance))
                for r in rows
            ],
        )  # fmt: skip
    db.close()


async def everything(store: SqliteStorage, **query: object) -> list[HistoryRow]:
    return await store.history("city", HistoryQuery(entity_ids=frozenset({E1, E2}), **query))  # type: ignore[arg-type]


async def test_a_version_1_database_is_migrated_with_its_history_intact(tmp_path: Path) -> None:
    """Every row comes back with its entity, attribute, datasetId, times and document, in the
    order version 1 gave (time, then the order written), and the database is at version 2."""
    path = tmp_path / "p.db"
    write_v1(path, ROWS)
    async with SqliteStorage(path) as store:
        got = await everything(store, timeproperty="modifiedAt")
        assert sorted(got, key=lambda r: r.instance_id) == sorted(ROWS, key=lambda r: r.instance_id)
        by_observed = await everything(store)
        assert [r.instance["value"] for r in by_observed] == [2, 4, 1, 3, 6]  # no Relationship
        last = await everything(store, last_n=2, attrs=frozenset({NS + "v"}))
        assert [r.instance["value"] for r in last] == [1, 3, 6]
        assert store.db.execute("SELECT value FROM meta").fetchone() == ("2",)
        tables = {r[0] for r in store.db.execute("SELECT name FROM sqlite_master")}
        assert "history_v1" not in tables
        # New writes after the migration join the migrated series.
        await store.write_entities("city", [], [row(E1, "v", 9, 7)])
        got = await everything(store, attrs=frozenset({NS + "v"}))
        assert [r.instance["value"] for r in got] == [2, 4, 1, 3, 7, 6]
        assert store.db.execute("SELECT count(*) FROM series").fetchone() == (4,)
    async with SqliteStorage(path) as store:  # opening again does not migrate again
        assert len(await everything(store, timeproperty="modifiedAt")) == 7


async def test_a_failed_migration_leaves_version_1_as_it_was(tmp_path: Path) -> None:
    """The migration is one transaction: when it fails, the old table and version remain."""
    path = tmp_path / "p.db"
    write_v1(path, ROWS)
    with sqlite3.connect(path) as db:  # a row no version 2 time key can be made of
        db.execute(
            "INSERT INTO history VALUES ('city', ?, ?, NULL, 'not a time', ?, 'urn:i:9', '{}')",
            (E1, NS + "v", key(59)),
        )
    db.close()
    with pytest.raises(sqlite3.OperationalError):
        async with SqliteStorage(path):
            pass
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT value FROM meta").fetchone() == ("1",)
        assert db.execute("SELECT count(*) FROM history").fetchone() == (len(ROWS) + 1,)
    db.close()


async def test_a_rolled_back_write_does_not_leave_a_series_id_behind(tmp_path: Path) -> None:
    """Series created in a transaction that rolls back are gone; their ids must not be
    remembered, or later rows would point at no series and never be found."""
    async with SqliteStorage(tmp_path / "p.db") as store:
        bad = row(E1, "v", 1, 1)._replace(instance={"value": object()})  # not serializable
        with pytest.raises(TypeError):
            await store.write_entities("city", [], [bad])
        assert store.db.execute("SELECT count(*) FROM series").fetchone() == (0,)
        await store.write_entities("city", [], [row(E1, "v", 1, 2)])
        assert [r.instance["value"] for r in await everything(store)] == [2]


async def test_deleted_history_hides_its_attribute_until_written_again(tmp_path: Path) -> None:
    """Series rows stay after their history is deleted; the attribute does not show until
    new history comes, which reuses the series."""
    async with SqliteStorage(tmp_path / "p.db") as store:
        await store.write_entities("city", [], ROWS)
        assert await store.delete_history("city", E1, NS + "v", "") == 3  # the default dataset
        got = await everything(store, timeproperty="modifiedAt")
        assert sorted(r.instance["value"] for r in got) == [4, 5, 6]
        assert await store.delete_history("city", E1, None) == 2
        assert store._history_attrs("city", E1, None) == []
        await store.write_entities("city", [], [row(E1, "v", 5, 8)])
        assert store._history_attrs("city", E1, None) == [NS + "v"]
        assert store.db.execute("SELECT count(*) FROM series").fetchone() == (4,)


async def test_replacing_an_instance_can_move_it_to_another_dataset(tmp_path: Path) -> None:
    """Modify Attribute Instance (5.6.14) may change datasetId and observedAt."""
    async with SqliteStorage(tmp_path / "p.db") as store:
        await store.write_entities("city", [], ROWS)
        new = row(E1, "v", 8, 1, "urn:ngsi-ld:dataset:c")._replace(instance_id="urn:i:1")
        assert await store.replace_history_instance("city", E1, NS + "v", new)
        assert not await store.replace_history_instance("city", E2, NS + "v", new)
        got = {r.instance_id: r for r in await everything(store)}
        assert got["urn:i:1"].dataset_id == "urn:ngsi-ld:dataset:c"
        assert got["urn:i:1"].observed_at == key(8)
        assert await store.delete_history_instance("city", E1, NS + "v", "urn:i:1")
        assert "urn:i:1" not in {r.instance_id for r in await everything(store)}


@pytest.mark.parametrize(
    "text",
    [
        "1970-01-01T00:00:00.000000Z",
        "1969-12-31T23:59:59.999999Z",
        "0001-01-01T00:00:00.000000Z",
        "9999-12-31T23:59:59.999999Z",
        "2026-12-01T18:11:14.174000Z",
    ],
)
def test_time_keys_survive_the_integer_form_and_keep_their_order(text: str) -> None:
    """Observation times are stored as integer microseconds, exactly and in the same order."""
    assert series.key_of(series.micros(text)) == text
    assert (
        series.micros("2026-12-01T18:11:14.174001Z") - series.micros("2026-12-01T18:11:14.174000Z")
        == 1
    )
