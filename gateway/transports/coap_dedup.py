"""A compact CoAP duplicate table for the gateway's push endpoint (RFC 7252 4.5).

A server keeps, for EXCHANGE_LIFETIME (247 s, RFC 7252 4.8.2), the Message IDs it has seen and
the answer it gave, so that a retransmitted CON gets the same answer and is not processed twice.
aiocoap 0.4 keeps a whole response ``Message`` (options, transport tuning, the remote) and one
event-loop timer per request: about 3 KB and two dozen objects the garbage collector has to walk,
so 60,000 pushes left 1.46 million objects and a 0.6 s collection pause in the gateway (see
docs/benchmarks.md). This table keeps per request one key tuple of plain values and, for
confirmable requests, the encoded answer's bytes; entries expire in one-second buckets instead of
one timer each.

:func:`install` puts the table in front of aiocoap's message layer on one server context, at this
one boundary: aiocoap calls ``_deduplicate_message`` for every incoming request and
``_store_response_for_duplicates`` for every outgoing message (its own hooks for the purpose). A
version of aiocoap without them keeps its own table, with a warning.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

import aiocoap
from aiocoap.message import Direction
from aiocoap.numbers.constants import TransportTuning
from aiocoap.numbers.types import Type

log = logging.getLogger(__name__)

BUCKET = 1.0  # seconds; an entry lives between EXCHANGE_LIFETIME and one bucket more
EXPIRE_EVERY = 10.0  # seconds between expiry passes when no request arrives to trigger one


class DuplicateTable:
    """Message keys seen within ``lifetime`` seconds, each with the answer sent (or None)."""

    def __init__(self, lifetime: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self._clock = clock
        self._answers: dict[Hashable, bytes | None] = {}
        self._buckets: deque[tuple[float, list[Hashable]]] = deque()

    def __len__(self) -> int:
        return len(self._answers)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._answers

    def add(self, key: Hashable) -> bool:
        """Record ``key``; False if it was already there (a duplicate)."""
        if key in self._answers:
            return False
        now = self._clock()
        self.expire(now)
        deadline = now + self.lifetime
        # A key joins the newest bucket only if that bucket expires no earlier than the key
        # should: nothing leaves before the lifetime the RFC asks for.
        if not self._buckets or deadline > self._buckets[-1][0]:
            self._buckets.append((deadline + BUCKET, []))
        self._buckets[-1][1].append(key)
        self._answers[key] = None
        return True

    def answer(self, key: Hashable) -> bytes | None:
        return self._answers.get(key)

    def set_answer(self, key: Hashable, encoded: bytes) -> None:
        """Keep the encoded answer for a key seen (answers to keys not seen are not kept)."""
        if key in self._answers:
            self._answers[key] = encoded

    def expire(self, now: float | None = None) -> None:
        now = self._clock() if now is None else now
        while self._buckets and self._buckets[0][0] <= now:
            for key in self._buckets.popleft()[1]:
                self._answers.pop(key, None)


def message_key(message: aiocoap.Message) -> Hashable:
    """(address, port, flow info, Message ID): what aiocoap's UDP remotes compare by."""
    sockaddr = getattr(message.remote, "sockaddr", None)
    if sockaddr is None:
        return (message.remote, message.mid)
    return (*sockaddr[:-1], message.mid)


def install(context: Any) -> DuplicateTable | None:
    """Replace aiocoap's duplicate detection on every message layer of ``context``."""
    table = DuplicateTable(TransportTuning().EXCHANGE_LIFETIME)
    installed = False
    for interface in getattr(context, "request_interfaces", []):
        manager = getattr(interface, "token_interface", None)
        needed = ("_deduplicate_message", "_store_response_for_duplicates", "_send_via_transport")
        if manager is None or not all(hasattr(manager, name) for name in needed):
            continue
        manager._deduplicate_message = _deduplicator(table, manager)
        manager._store_response_for_duplicates = _storer(table)
        manager._recent_messages = {}  # aiocoap's own table, no longer filled
        installed = True
    if not installed:
        log.warning("CoAP: this aiocoap has no duplicate hooks; keeping its own table")
        return None
    return table


def _deduplicator(table: DuplicateTable, manager: Any) -> Callable[[aiocoap.Message], bool]:
    def deduplicate(message: aiocoap.Message) -> bool:
        key = message_key(message)
        if table.add(key):
            return False
        encoded = table.answer(key)
        if message.mtype is Type.CON and encoded is not None:
            # The answer again, byte for byte, in the same exchange (RFC 7252 4.5); the
            # request itself is not processed a second time.
            again = aiocoap.Message.decode(encoded, message.remote)
            again.direction = Direction.OUTGOING
            manager._send_via_transport(again)
        log.info("CoAP: duplicate %s MID %d from %s", message.mtype, message.mid, message.remote)
        return True

    return deduplicate


def _storer(table: DuplicateTable) -> Callable[[aiocoap.Message], None]:
    def store(message: aiocoap.Message) -> None:
        key = message_key(message)
        if key in table:
            table.set_answer(key, message.encode())

    return store
