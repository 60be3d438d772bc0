"""Entity documents kept in memory for batch upserts, as long as no other connection writes.

With 1,000 devices and more, every batch upsert updates about one reading per entity, and reading
and decoding those entities from SQLite was a tenth of its time.  The cache holds the documents
last written or read for a batch upsert.  It hands them out only to callers that do not change
them (``get_entities(..., shared=True)``), and it is dropped whole when SQLite's
``PRAGMA data_version`` says another connection (a second platform on the same file) has
committed since the last look (https://www.sqlite.org/pragma.html#pragma_data_version).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from city_platform.storage.base import Entity

LIMIT = 50_000  # documents kept (about 2 KB each decoded); beyond it the cache starts over


class DocumentCache:
    def __init__(self) -> None:
        self._docs: dict[tuple[str, str], Entity] = {}
        self._version = -1

    def valid(self, db: sqlite3.Connection) -> bool:
        """True when no other connection has committed since the last call (else cleared)."""
        version = int(db.execute("PRAGMA data_version").fetchone()[0])
        if version != self._version:
            self._docs.clear()
            self._version = version
            return False
        return True

    def get(self, tenant: str, entity_id: str) -> Entity | None:
        return self._docs.get((tenant, entity_id))

    def remember(self, tenant: str, entities: Iterable[Entity]) -> None:
        if len(self._docs) > LIMIT:
            self._docs.clear()
        for entity in entities:
            self._docs[tenant, entity["id"]] = entity

    def forget(self, tenant: str, entity_id: str) -> None:
        self._docs.pop((tenant, entity_id), None)

    def clear(self) -> None:
        self._docs.clear()
        self._version = -1
