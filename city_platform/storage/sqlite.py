"""The embedded default backend: one SQLite file in WAL mode.

All calls run on the event loop thread and each is one short transaction, so requests are
serialized without locks; WAL plus a busy timeout keeps other processes (a second platform,
a backup) safe.  Documents are stored as JSON (orjson) blobs; the columns beside them are only
what queries filter or sort on.  The schema carries a version for later migrations.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

from city_platform.errors import PlatformError
from city_platform.query.regex import compile_regex
from city_platform.storage import series
from city_platform.storage.base import Entity, EntityFilter, HistoryQuery, HistoryRow, Storage
from city_platform.storage.checkpointer import WalCheckpointer
from city_platform.storage.doccache import DocumentCache
from city_platform.storage.repeats import drop_repeats

log = logging.getLogger(__name__)

# A query scan hands the event loop back every this many rows, so that a scan of a big tenant
# (q, idPattern and geo-queries are evaluated here, row by row) does not hold up the other
# requests.  SQLite lets the same connection write, commit and roll back while the scan's
# statement stays open; rows written meanwhile may or may not be seen.
SCAN_YIELD_ROWS = 500

_MAX_PARAMS = 500  # stay well under SQLite's bound-parameter limit
_OF_ENTITY = "SELECT id FROM series WHERE tenant=? AND entity_id=?"
_COLUMNS = "rowid AS seq, series, observed_at, modified_at, instance_id, doc"


class SqliteStorage(Storage):
    """SQLite storage; ``path`` may be ``":memory:"`` for tests."""

    def __init__(self, path: str | Path) -> None:
        self._path = str(path)
        self._db: sqlite3.Connection | None = None
        self._tenants: set[str] = set()
        self._checkpointer: WalCheckpointer | None = None
        self._cache = DocumentCache()  # for batch upserts (shared reads)
        self._series = series.SeriesIds()

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
        found = series.version(db)
        if found is not None and found > series.SCHEMA_VERSION:
            db.close()
            raise PlatformError(
                f"database {self._path} has schema version {found}, newer than this "
                f"platform's {series.SCHEMA_VERSION}: upgrade the testbed"
            )
        series.create(db, found)
        db.execute(
            "CREATE TABLE IF NOT EXISTS jsonld_contexts (tenant TEXT NOT NULL, id TEXT NOT NULL, "
            "doc BLOB NOT NULL, PRIMARY KEY (tenant, id))"
        )  # hosted @contexts, CIM 009 5.13.2
        db.execute(
            "CREATE TABLE IF NOT EXISTS csources (kind TEXT NOT NULL, tenant TEXT NOT NULL, "
            "id TEXT NOT NULL, doc BLOB NOT NULL, PRIMARY KEY (kind, tenant, id))"
        )  # context source registrations and their subscriptions, CIM 009 5.9, 5.11
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
        self._series.clear()

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

    def _insert_history(
        self, tenant: str, history: list[HistoryRow]
    ) -> dict[tuple[str, str, str, str], int]:
        """Insert inside the caller's transaction; give what returns to ``_committed``."""
        if not history:
            return {}
        ids, fresh = self._series.ids(self.db, tenant, history)
        micros = series.micros_or_none
        keys = [
            None if h.observed_at is None else (sid, micros(h.observed_at))
            for sid, h in zip(ids, history, strict=True)
        ]
        # A redelivered reading is not a second instance (city_platform/storage/repeats.py).
        keep = drop_repeats(keys, history, series.stored_at(self.db, keys))
        self.db.executemany(
            "INSERT INTO history VALUES (?,?,?,?,?)",
            [
                (
                    ids[i],
                    micros(history[i].observed_at),
                    history[i].modified_at,
                    history[i].instance_id,
                    orjson.dumps(history[i].instance),
                )
                for i in keep
            ],
        )
        return fresh

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
            fresh = self._insert_history(tenant, history)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._series.committed(fresh)
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
            fresh = self._insert_history(tenant, history)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._series.committed(fresh)
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
                    f"DELETE FROM history WHERE series IN ({_OF_ENTITY})", (tenant, entity_id)
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
        pattern = compile_regex(where.id_pattern) if where.id_pattern else None
        wanted_attrs = where.attrs
        page: list[Entity] = []
        total = 0
        stop = None if limit is None else offset + limit
        for n, (doc,) in enumerate(self.db.execute(" ".join(sql), params), 1):
            if n % SCAN_YIELD_ROWS == 0:
                await asyncio.sleep(0)  # other requests run between chunks of a long scan
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
        by_observed = query.timeproperty == "observedAt"
        column = "observed_at" if by_observed else "modified_at"

        def bound(key: str | None) -> int | str | None:
            return series.micros(key) if by_observed and key is not None else key

        sql: list[str] = []
        extra: list[Any] = []
        if query.timerel == "before":
            sql.append(f"AND {column} < ?")
            extra.append(bound(query.time_at))
        elif query.timerel == "after":
            sql.append(f"AND {column} >= ?")  # 'after' includes timeAt in practice (6.3.10)
            extra.append(bound(query.time_at))
        elif query.timerel == "between":
            sql.append(f"AND {column} >= ? AND {column} < ?")
            extra.extend([bound(query.time_at), bound(query.end_time_at)])
        elif by_observed:
            sql.append("AND observed_at IS NOT NULL")
        rows: list[HistoryRow] = []
        for entity_id in sorted(query.entity_ids):
            of_entity = series.of_entity(self.db, tenant, entity_id)
            for attr in self._history_attrs(tenant, entity_id, query.attrs):
                ids = [sid for sid, (a, _) in of_entity.items() if a == attr]
                if not ids:
                    continue
                where = f"WHERE series IN ({','.join('?' * len(ids))}) " + " ".join(sql)
                params = [*ids, *extra]
                if query.last_n is not None:
                    stmt = (
                        f"SELECT * FROM (SELECT {_COLUMNS} FROM history {where} "
                        f"ORDER BY {column} DESC, rowid DESC LIMIT ?) ORDER BY {column}, seq"
                    )
                    params.append(query.last_n)
                else:
                    stmt = f"SELECT {_COLUMNS} FROM history {where} ORDER BY {column}, rowid"
                    if query.first_n is not None:
                        stmt += " LIMIT ?"
                        params.append(query.first_n)
                for _, sid, observed, modified, instance_id, doc in self.db.execute(stmt, params):
                    name, dataset_id = of_entity[sid]
                    rows.append(
                        HistoryRow(
                            entity_id=entity_id,
                            attr=name,
                            dataset_id=dataset_id,
                            observed_at=None if observed is None else series.key_of(observed),
                            modified_at=modified,
                            instance_id=instance_id,
                            instance=orjson.loads(doc),
                        )
                    )
        return rows

    def _history_attrs(
        self, tenant: str, entity_id: str, attrs: frozenset[str] | None
    ) -> list[str]:
        if attrs is not None:
            return sorted(attrs)
        cur = self.db.execute(
            "SELECT DISTINCT attr FROM series WHERE tenant=? AND entity_id=? "
            "AND EXISTS (SELECT 1 FROM history WHERE history.series = series.id)",
            (tenant, entity_id),
        )
        return sorted(r[0] for r in cur)

    async def delete_history(
        self, tenant: str, entity_id: str, attr: str | None, dataset_id: str | None = None
    ) -> int:
        sql = _OF_ENTITY
        params: list[Any] = [tenant, entity_id]
        if attr is not None:
            sql += " AND attr=?"
            params.append(attr)
            if dataset_id is not None:
                sql += " AND dataset_id=?"
                params.append(dataset_id)  # '' is the default instance, as in the table
        return self.db.execute(f"DELETE FROM history WHERE series IN ({sql})", params).rowcount

    async def replace_history_instance(
        self, tenant: str, entity_id: str, attr: str, row: HistoryRow
    ) -> bool:
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            (sid,), fresh = self._series.ids(db, tenant, [row])
            cur = db.execute(
                "UPDATE history SET series=?, observed_at=?, modified_at=?, doc=? "
                f"WHERE series IN ({_OF_ENTITY} AND attr=?) AND instance_id=?",
                (
                    sid,
                    series.micros_or_none(row.observed_at),
                    row.modified_at,
                    orjson.dumps(row.instance),
                    tenant,
                    entity_id,
                    attr,
                    row.instance_id,
                ),
            )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._series.committed(fresh)
        return cur.rowcount > 0

    async def delete_history_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str
    ) -> bool:
        cur = self.db.execute(
            f"DELETE FROM history WHERE series IN ({_OF_ENTITY} AND attr=?) AND instance_id=?",
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

    # Hosted @contexts (CIM 009 5.13.2); the table is created on open (CREATE IF NOT EXISTS, so
    # files of schema version 2 written before it simply gain it).
    async def put_jsonld_context(self, tenant: str, local_id: str, doc: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO jsonld_contexts VALUES (?,?,?)",
            (tenant, local_id, orjson.dumps(doc)),
        )

    async def list_jsonld_contexts(self) -> list[tuple[str, str, dict[str, Any]]]:
        cur = self.db.execute("SELECT tenant, id, doc FROM jsonld_contexts ORDER BY rowid")
        return [(t, i, dict(orjson.loads(d))) for t, i, d in cur]

    async def delete_jsonld_context(self, tenant: str, local_id: str) -> bool:
        cur = self.db.execute(
            "DELETE FROM jsonld_contexts WHERE tenant=? AND id=?", (tenant, local_id)
        )
        return cur.rowcount > 0

    # Context source registrations and csource subscriptions (CIM 009 5.9, 5.11), one table
    # keyed by kind ("registration" or "subscription"); created on open (CREATE IF NOT EXISTS).
    async def put_csource_doc(
        self, kind: str, tenant: str, doc_id: str, doc: dict[str, Any]
    ) -> None:
        self._ensure_tenant(tenant)
        self.db.execute(
            "INSERT INTO csources VALUES (?,?,?,?) ON CONFLICT (kind, tenant, id) "
            "DO UPDATE SET doc=excluded.doc",
            (kind, tenant, doc_id, orjson.dumps(doc)),
        )

    async def list_csource_docs(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        cur = self.db.execute(
            "SELECT tenant, doc FROM csources WHERE kind=? ORDER BY rowid", (kind,)
        )
        return [(t, dict(orjson.loads(d))) for t, d in cur]

    async def delete_csource_doc(self, kind: str, tenant: str, doc_id: str) -> bool:
        cur = self.db.execute(
            "DELETE FROM csources WHERE kind=? AND tenant=? AND id=?", (kind, tenant, doc_id)
        )
        return cur.rowcount > 0
