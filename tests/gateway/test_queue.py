"""The durable queue keeps accepted items across reopening until they are acknowledged."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from gateway import checkpoint
from gateway.queue import DurableQueue, Pending, lane_key


def ids(rows: list[Pending]) -> list[str]:
    return [doc["id"] for p in rows for doc in p.documents()]


def test_items_survive_reopen_until_acked(tmp_path: Path) -> None:
    """put, close, reopen: the items are there in order; ack removes exactly those."""
    path = tmp_path / "q.db"
    q = DurableQueue(path)
    q.put([(1.0, 1, [{"id": "a"}], 0), (2.0, 2, [{"id": "b"}], 0)])
    q.put([(3.0, 1, [{"id": "c"}], 0)])
    q.close()
    q = DurableQueue(path)
    assert len(q) == 3
    rows = q.peek(2)
    assert ids(rows) == ["a", "b"]
    assert [(p.observed, p.readings, p.items) for p in rows] == [((1.0, 2.0), 3, 2)]
    q.ack(rows)
    q.close()
    q = DurableQueue(path)
    assert len(q) == 1
    assert q.peek(10)[0].documents() == [{"id": "c"}]
    q.close()


def test_one_commit_is_one_row_per_lane(tmp_path: Path) -> None:
    """A put of many items writes a row per lane, each with every item's time and documents."""
    q = DurableQueue(tmp_path / "q.db", lanes=2)
    q.put([(float(n), 1, [{"id": f"e{n}"}, {"id": f"d{n}"}], n) for n in range(100)])
    assert len(q) == 100
    rows = {lane: q.peek(1000, lane) for lane in (0, 1)}
    assert [len(r) for r in rows.values()] == [1, 1]
    assert rows[0][0].observed == tuple(float(n) for n in range(0, 100, 2))
    assert (rows[1][0].entities, rows[1][0].readings, rows[1][0].items) == (100, 50, 50)
    assert ids(rows[1])[:4] == ["e1", "d1", "e3", "d3"]
    count = sqlite3.connect(tmp_path / "q.db").execute("SELECT count(*) FROM pending")
    assert count.fetchone()[0] == 2
    q.close()


def test_peek_stops_at_the_entity_budget(tmp_path: Path) -> None:
    """Rows are taken whole until the next would pass the budget; one row always comes."""
    q = DurableQueue(tmp_path / "q.db")
    for n in range(3):
        q.put([(float(n), 1, [{"id": f"e{n}-{k}"} for k in range(40)], 0)])
    assert [p.entities for p in q.peek(100)] == [40, 40]
    assert [p.entities for p in q.peek(10)] == [40]
    q.close()


def _old_queue(path: Path, columns: str, rows: list[tuple[object, ...]]) -> None:
    """A queue file as an earlier version wrote it: ``columns`` after seq, and their rows."""
    db = sqlite3.connect(path)
    db.execute(f"CREATE TABLE pending (seq INTEGER PRIMARY KEY AUTOINCREMENT, {columns})")
    names = ", ".join(c.split()[0] for c in columns.split(","))
    marks = ", ".join("?" * len(rows[0]))
    db.executemany(f"INSERT INTO pending ({names}) VALUES ({marks})", rows)
    db.commit()
    db.close()


def test_a_queue_file_from_before_the_entity_count_still_drains(tmp_path: Path) -> None:
    """Items written by the earlier schema (no entity count) are read and counted."""
    path = tmp_path / "old.db"
    columns = "observed REAL NOT NULL, readings INTEGER NOT NULL, docs BLOB NOT NULL"
    _old_queue(path, columns, [(1.0, 2, b'[{"id":"a"},{"id":"b"}]')])
    q = DurableQueue(path)
    q.put([(2.0, 1, [{"id": "c"}], 0)])
    assert [(p.entities, p.readings, p.observed) for p in q.peek(10)] == [
        (2, 2, (1.0,)),
        (1, 1, (2.0,)),
    ]
    q.ack(q.peek(1))
    assert len(q) == 1
    q.close()


def test_items_from_before_lanes_go_to_their_devices_lanes(tmp_path: Path) -> None:
    """After an upgrade a device's old backlog is in its own lane, ahead of its new items."""
    path = tmp_path / "old.db"
    devices = ["noise-1", "noise-4"]  # lanes 1 and 0 of 2
    assert sorted(lane_key(d) % 2 for d in devices) == [0, 1]
    docs = [f'[{{"id":"urn:ngsi-ld:NoiseLevelObserved:{d}"}}]'.encode() for d in devices]
    columns = "observed REAL, readings INTEGER, docs BLOB, entities INTEGER NOT NULL DEFAULT -1"
    _old_queue(path, columns, [(1.0, 1, doc, 1) for doc in docs])
    q = DurableQueue(path, lanes=2)
    q.put([(2.0, 1, [{"id": f"urn:ngsi-ld:NoiseLevelObserved:{d}", "new": 1}], lane_key(d))
           for d in devices])  # fmt: skip
    for device in devices:
        docs_in_lane = [d for p in q.peek(10, lane_key(device) % 2) for d in p.documents()]
        assert [("new" in d) for d in docs_in_lane] == [False, True], device
        assert {d["id"].rsplit(":", 1)[1] for d in docs_in_lane} == {device}
    q.close()


def test_per_item_rows_of_the_previous_version_keep_their_device_lanes(tmp_path: Path) -> None:
    """Rows of one item each, keyed by the device's lane key, drain in that device's lane."""
    path = tmp_path / "old.db"
    columns = (
        "observed REAL, readings INTEGER, docs BLOB, entities INTEGER NOT NULL DEFAULT -1, "
        "lane INTEGER NOT NULL DEFAULT 0"
    )
    _old_queue(path, columns, [(float(n), 1, f'[{{"id":"e{n}"}}]'.encode(), 1, key)
                               for n, key in enumerate([7, 2, 9, 4])])  # fmt: skip
    q = DurableQueue(path, lanes=2)
    q.put([(9.0, 1, [{"id": "new-odd"}], 5), (9.0, 1, [{"id": "new-even"}], 8)])
    assert not q.serial
    assert ids(q.peek(10, 1)) == ["e0", "e2", "new-odd"]
    assert ids(q.peek(10, 0)) == ["e1", "e3", "new-even"]
    q.close()


def test_rows_of_another_lane_count_go_first_and_in_order(tmp_path: Path) -> None:
    """After a change of lane count, lane 0 sends what was queued before, in order, alone;
    then every lane sends its own again."""
    path = tmp_path / "q.db"
    q = DurableQueue(path, lanes=4)
    q.put([(float(n), 1, [{"id": f"old{n}"}], n) for n in range(4)])  # four rows of four lanes
    q.close()
    q = DurableQueue(path, lanes=2)
    q.put([(9.0, 1, [{"id": "new0"}], 0), (9.0, 1, [{"id": "new1"}], 1)])
    assert q.serial
    assert q.peek(10, 1) == []
    first = q.peek(2, 0)
    assert ids(first) == ["old0", "old1"]
    q.ack(first)
    assert q.serial
    rest = q.peek(10, 0)
    assert ids(rest) == ["old2", "old3"]  # not yet the new rows: those are after the old ones
    q.ack(rest)
    assert not q.serial
    assert ids(q.peek(10, 0)) == ["new0"]
    assert ids(q.peek(10, 1)) == ["new1"]
    q.close()


def test_checkpoints_run_off_the_writer_and_the_log_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The committing connection never checkpoints by itself (it would fsync on the event
    loop); the checkpoint thread keeps the log short under steady puts and acks, and what is
    queued is all there after reopening."""
    monkeypatch.setattr(checkpoint, "INTERVAL", 0.01)
    path = tmp_path / "q.db"
    q = DurableQueue(path, lanes=2)
    assert q._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    doc = {"id": "urn:ngsi-ld:T:1", "v": "x" * 200}
    for n in range(1000):
        q.put([(float(n), 1, [doc] * 20, k) for k in range(2)])
        q.ack(q.peek(1000, 0))  # lane 1 keeps its items
        time.sleep(0.002)  # MQTT turns come with gaps between them
    # 1,000 commits of about 10 KiB and 1,000 deletes: about 9,600 frames without checkpoints;
    # the file keeps the size of the longest log (under 1,000 frames on an idle machine, about
    # 1,800 on a busy one).
    frames = (path.with_name("q.db-wal").stat().st_size - 32) // (4096 + 24)
    assert frames < 4000
    q.close()
    q = DurableQueue(path, lanes=2)
    assert len(q) == 1000
    assert len(q.peek(100_000, 1)) == 1000
    q.close()
