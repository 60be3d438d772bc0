"""The embedded default backend: one SQLite file in WAL mode.

All calls run on the event loop thread and each is one short transaction, so requests are
serialized without locks; WAL plus a busy timeout keeps other processes (a second platform,
a backup) safe.  Documents are stored as JSON (orjson) blobs; the columns beside them are only
what queries filter or sort on.  The schema carries a version for later migrations.
"""

from __future__ import annotations

import logging
import re
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from city_platform.errors import PlatformError
from city_platform.storage.base import Entity, EntityFilter, HistoryQuery, HistoryRow, Storage
from city_platform.storage.checkpointer import WalCheckpointer
from city_platform.storage.doccache import DocumentCache

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tenants (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS entities (
    seq INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    types TEXT NOT NULL,
    doc BLOB NOT NULL,
    UNIQUE (tenant, id)
);
CREATE TABLE IF NOT EXISTS history (
    tenant TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    attr TEXT NOT NULL,
    dataset_id TEXT,
    observed_at TEXT,
    modified_at TEXT NOT NULL,
    instance_id TEXT NOT NULL,
    doc BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS history_by_time ON history (tenant, entity_id, attr, observed_at);
CREATE TABLE IF NOT EXISTS subscriptions (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (tenant, id)
);
"""
_MAX_PARAMS = 500  # stay well under SQLite's bound-parameter limit


class SqliteStorage(Storage):
    """SQLite storage; ``path`` may be ``":memory:"`` for tests."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._db: sqlite3.Connection | None = None
        self._tenants: set[str] = set()
        self._checkpointer: WalCheckpointer | None = None
        self._cache = DocumentCache()  # for batch upserts (shared reads)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            raise PlatformError("storage is not open")
        return self._db

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across app crashes
        db.execute("PRAGMA busy_timeout=5000")
        db.execute("PRAGMA cache_size=-65536")
        db.executescript(_SCHEMA)
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        if row is None:
            db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
        elif int(row[0]) > SCHEMA_VERSION:
            db.close()
            raise PlatformError(
                f"database {self._path} has schema version {row[0]}, newer than this "
                f"platform's {SCHEMA_VERSION}: upgrade the testbed"
            )
        self._tenants = {r[0] for r in db.execute("SELECT name FROM tenants")}
        if self._path != ":memory:":
            self._checkpointer = WalCheckpointer(self._path)
            self._checkpointer.start(db)
        self._db = db
        log.info("SQLite storage open at %s", self._path)

    async def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None
        if self._db is not None:
            self._db.close()
            self._db = None
        self._cache.clear()

    def _ensure_tenant(self, tenant: str) -> None:
        if tenant not in self._tenants:
            self.db.execute("INSERT OR IGNORE INTO tenants VALUES (?)", (tenant,))
            self._tenants.add(tenant)

    async def tenant_exists(self, tenant: str) -> bool:
        return tenant == "" or tenant in self._tenants

    async def get_entities(
        self, tenant: str, ids: Iterable[str], *, shared: bool = False
    ) -> dict[str, Entity]:
        wanted = list(dict.fromkeys(ids))
        found: dict[str, Entity] = {}
        if shared and self._cache.valid(self.db):
            missing = []
            for entity_id in wanted:
                doc = self._cache.get(tenant, entity_id)
                if doc is None:
                    missing.append(entity_id)
                else:
                    found[entity_id] = doc
            wanted = missing
        for start in range(0, len(wanted), _MAX_PARAMS):
            chunk = wanted[start : start + _MAX_PARAMS]
            marks = ",".join("?" * len(chunk))
            rows = self.db.execute(
                f"SELECT id, doc FROM entities WHERE tenant=? AND id IN ({marks})",
                (tenant, *chunk),
            )
            for entity_id, doc in rows:
                found[entity_id] = orjson.loads(doc)
        if shared and wanted:
            self._cache.remember(tenant, (found[i] for i in wanted if i in found))
        return found

    def _insert_history(self, tenant: str, history: list[HistoryRow]) -> None:
        if history:
            self.db.executemany(
                "INSERT INTO history VALUES (?,?,?,?,?,?,?,?)",
                [
                    (
                        tenant,
                        h.entity_id,
                        h.attr,
                        h.dataset_id,
                        h.observed_at,
                        h.modified_at,
                        h.instance_id,
                        orjson.dumps(h.instance),
                    )
                    for h in history
                ],
            )

    async def insert_entity(self, tenant: str, entity: Entity, history: list[HistoryRow]) -> bool:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            cur = db.execute(
                "INSERT OR IGNORE INTO entities (tenant, id, types, doc) VALUES (?,?,?,?)",
                (tenant, entity["id"], orjson.dumps(entity["type"]), orjson.dumps(entity)),
            )
            if cur.rowcount == 0:
                db.execute("ROLLBACK")
                return False
            self._ensure_tenant(tenant)
            self._insert_history(tenant, history)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._cache.forget(tenant, entity["id"])
        if self._checkpointer is not None:
            self._checkpointer.after_commit(db)
        return True

    async def write_entities(
        self, tenant: str, entities: list[Entity], history: list[HistoryRow]
    ) -> None:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            # ON CONFLICT keeps the row (and its seq, the stable query order) of existing ids.
            db.executemany(
                "INSERT INTO entities (tenant, id, types, doc) VALUES (?,?,?,?) "
                "ON CONFLICT (tenant, id) DO UPDATE SET types=excluded.types, doc=excluded.doc",
                [(tenant, e["id"], orjson.dumps(e["type"]), orjson.dumps(e)) for e in entities],
            )
            self._ensure_tenant(tenant)
            self._insert_history(tenant, history)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        # The written documents are what is stored now; the broker does not change a document
        # once it has written it (notifications render them later as they are).
        self._cache.remember(tenant, entities)
        if self._checkpointer is not None:
            self._checkpointer.after_commit(db)

    async def delete_entities(self, tenant: str, ids: Iterable[str]) -> set[str]:
        wanted = list(dict.fromkeys(ids))
        existing = set((await self.get_entities(tenant, wanted)).keys())
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            for entity_id in existing:
                self._cache.forget(tenant, entity_id)
                db.execute("DELETE FROM entities WHERE tenant=? AND id=?", (tenant, entity_id))
                db.execute(
                    "DELETE FROM history WHERE tenant=? AND entity_id=?", (tenant, entity_id)
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return existing

    async def find_entities(
        self,
        tenant: str,
        where: EntityFilter,
        *,
        predicate: Callable[[Entity], bool] | None = None,
        limit: int | None = None,
        offset: int = 0,
        count: bool = False,
    ) -> tuple[list[Entity], int | None]:
        sql = ["SELECT doc FROM entities WHERE tenant=?"]
        params: list[Any] = [tenant]
        if where.ids is not None:
            ids = sorted(where.ids)
            sql.append(f"AND id IN ({','.join('?' * len(ids))})")
            params.extend(ids)
        if where.types is not None:
            types = sorted(where.types)
            sql.append(
                "AND EXISTS (SELECT 1 FROM json_each(entities.types) "
                f"WHERE value IN ({','.join('?' * len(types))}))"
            )
            params.extend(types)
        sql.append("ORDER BY seq")
        pattern = re.compile(where.id_pattern) if where.id_pattern else None
        wanted_attrs = where.attrs
        page: list[Entity] = []
        total = 0
        stop = None if limit is None else offset + limit
        for (doc,) in self.db.execute(" ".join(sql), params):
            entity: Entity = orjson.loads(doc)
            if pattern is not None and not pattern.search(entity["id"]):
                continue
            if wanted_attrs is not None and wanted_attrs.isdisjoint(entity["attrs"]):
                continue
            if predicate is not None and not predicate(entity):
                continue
            if offset <= total and (stop is None or total < stop):
                page.append(entity)
            total += 1
            if not count and stop is not None and total >= stop:
                break
        return page, (total if count else None)

    async def history(self, tenant: str, query: HistoryQuery) -> list[HistoryRow]:
        column = "observed_at" if query.timeproperty == "observedAt" else "modified_at"
        sql = ["WHERE tenant=? AND entity_id=?"]
        extra: list[Any] = []
        if query.timerel == "before":
            sql.append(f"AND {column} < ?")
            extra.append(query.time_at)
        elif query.timerel == "after":
            sql.append(f"AND {column} >= ?")  # 'after' includes timeAt in practice (6.3.10)
            extra.append(query.time_at)
        elif query.timerel == "between":
            sql.append(f"AND {column} >= ? AND {column} < ?")
            extra.extend([query.time_at, query.end_time_at])
        elif column == "observed_at":
            sql.append("AND observed_at IS NOT NULL")
        rows: list[HistoryRow] = []
        for entity_id in sorted(query.entity_ids):
            attrs = self._history_attrs(tenant, entity_id, query.attrs)
            for attr in attrs:
                where = " ".join(sql) + " AND attr=?"
                params = [tenant, entity_id, *extra, attr]
                if query.last_n is not None:
                    stmt = (
                        "SELECT * FROM (SELECT * FROM history "
                        f"{where} ORDER BY {column} DESC, rowid DESC LIMIT ?) "
                        f"ORDER BY {column}, rowid"
                    )
                    params.append(query.last_n)
                else:
                    stmt = f"SELECT * FROM history {where} ORDER BY {column}, rowid"
                rows.extend(_history_row(r) for r in self.db.execute(stmt, params))
        return rows

    def _history_attrs(
        self, tenant: str, entity_id: str, attrs: frozenset[str] | None
    ) -> list[str]:
        if attrs is not None:
            return sorted(attrs)
        cur = self.db.execute(
            "SELECT DISTINCT attr FROM history WHERE tenant=? AND entity_id=?", (tenant, entity_id)
        )
        return sorted(r[0] for r in cur)

    async def delete_history(
        self, tenant: str, entity_id: str, attr: str | None, dataset_id: str | None = None
    ) -> int:
        sql = "DELETE FROM history WHERE tenant=? AND entity_id=?"
        params: list[Any] = [tenant, entity_id]
        if attr is not None:
            sql += " AND attr=?"
            params.append(attr)
            if dataset_id is not None:
                sql += " AND dataset_id IS ?"
                params.append(dataset_id or None)
        return self.db.execute(sql, params).rowcount

    async def replace_history_instance(
        self, tenant: str, entity_id: str, attr: str, row: HistoryRow
    ) -> bool:
        cur = self.db.execute(
            "UPDATE history SET dataset_id=?, observed_at=?, modified_at=?, doc=? "
            "WHERE tenant=? AND entity_id=? AND attr=? AND instance_id=?",
            (
                row.dataset_id,
                row.observed_at,
                row.modified_at,
                orjson.dumps(row.instance),
                tenant,
                entity_id,
                attr,
                row.instance_id,
            ),
        )
        return cur.rowcount > 0

    async def delete_history_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str
    ) -> bool:
        cur = self.db.execute(
            "DELETE FROM history WHERE tenant=? AND entity_id=? AND attr=? AND instance_id=?",
            (tenant, entity_id, attr, instance_id),
        )
        return cur.rowcount > 0

    async def put_subscription(self, tenant: str, sub_id: str, doc: dict[str, Any]) -> None:
        self._ensure_tenant(tenant)
        self.db.execute(
            "INSERT OR REPLACE INTO subscriptions VALUES (?,?,?)",
            (tenant, sub_id, orjson.dumps(doc)),
        )

    async def get_subscription(self, tenant: str, sub_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT doc FROM subscriptions WHERE tenant=? AND id=?", (tenant, sub_id)
        ).fetchone()
        return None if row is None else dict(orjson.loads(row[0]))

    async def list_subscriptions(
        self, tenant: str | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        if tenant is None:
            cur = self.db.execute("SELECT tenant, doc FROM subscriptions ORDER BY rowid")
        else:
            cur = self.db.execute(
                "SELECT tenant, doc FROM subscriptions WHERE tenant=? ORDER BY rowid", (tenant,)
            )
        return [(t, dict(orjson.loads(d))) for t, d in cur]

    async def delete_subscription(self, tenant: str, sub_id: str) -> bool:
        cur = self.db.execute("DELETE FROM subscriptions WHERE tenant=? AND id=?", (tenant, sub_id))
        return cur.rowcount > 0


def _history_row(row: tuple[Any, ...]) -> HistoryRow:
    _, entity_id, attr, dataset_id, observed_at, modified_at, instance_id, doc = row
    return HistoryRow(
        entity_id=entity_id,
        attr=attr,
        dataset_id=dataset_id,
        observed_at=observed_at,
        modified_at=modified_at,
        instance_id=instance_id,
        instance=orjson.loads(doc),
    )
