"""The durable queue keeps accepted items across reopening until they are acknowledged."""

from __future__ import annotations

from pathlib import Path

from gateway.queue import DurableQueue


def test_items_survive_reopen_until_acked(tmp_path: Path) -> None:
    """put, close, reopen: the items are there in order; ack removes exactly those."""
    path = tmp_path / "q.db"
    q = DurableQueue(path)
    q.put([(1.0, 1, [{"id": "a"}]), (2.0, 2, [{"id": "b"}]), (3.0, 1, [{"id": "c"}])])
    q.close()
    q = DurableQueue(path)
    assert len(q) == 3
    items = q.peek(2)
    assert [docs[0]["id"] for _, _, _, docs in items] == ["a", "b"]
    assert [n for _, _, n, _ in items] == [1, 2]
    q.ack([seq for seq, _, _, _ in items])
    q.close()
    q = DurableQueue(path)
    assert len(q) == 1
    assert q.peek(10)[0][3] == [{"id": "c"}]
    q.close()
