"""The durable queue keeps accepted items across reopening until they are acknowledged."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gateway.queue import DurableQueue, lane_key


def test_items_survive_reopen_until_acked(tmp_path: Path) -> None:
    """put, close, reopen: the items are there in order; ack removes exactly those."""
    path = tmp_path / "q.db"
    q = DurableQueue(path)
    q.put([(1.0, 1, [{"id": "a"}], 0), (2.0, 2, [{"id": "b"}], 0), (3.0, 1, [{"id": "c"}], 0)])
    q.close()
    q = DurableQueue(path)
    assert len(q) == 3
    items = q.peek(2)
    assert [p.documents()[0]["id"] for p in items] == ["a", "b"]
    assert [p.readings for p in items] == [1, 2]
    q.ack([p.seq for p in items])
    q.close()
    q = DurableQueue(path)
    assert len(q) == 1
    assert q.peek(10)[0].documents() == [{"id": "c"}]
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
    assert [(p.entities, p.readings) for p in q.peek(10)] == [(2, 2), (1, 1)]
    q.ack([q.peek(1)[0].seq])
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
    q = DurableQueue(path)
    q.put([(2.0, 1, [{"id": f"urn:ngsi-ld:NoiseLevelObserved:{d}", "new": 1}], lane_key(d))
           for d in devices])  # fmt: skip
    for device in devices:
        items = q.peek(10, lane_key(device) % 2, 2)
        assert [("new" in p.documents()[0]) for p in items] == [False, True], device
        assert {p.documents()[0]["id"].rsplit(":", 1)[1] for p in items} == {device}
    q.close()


def test_peek_by_lane_keeps_the_order_within_each_lane(tmp_path: Path) -> None:
    """A lane sees only the items whose key falls in it, oldest first; one lane sees all."""
    q = DurableQueue(tmp_path / "q.db")
    q.put([(float(n), 1, [{"id": f"e{n}"}], key) for n, key in enumerate([7, 2, 9, 4, 11, 6])])
    ids = lambda items: [p.documents()[0]["id"] for p in items]  # noqa: E731
    assert ids(q.peek(10, 1, 2)) == ["e0", "e2", "e4"]
    assert ids(q.peek(10, 0, 2)) == ["e1", "e3", "e5"]
    assert ids(q.peek(2, 0, 2)) == ["e1", "e3"]
    assert ids(q.peek(10)) == ["e0", "e1", "e2", "e3", "e4", "e5"]
    q.close()
