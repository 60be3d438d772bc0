"""SQLite history by series (schema version 2): the table layout, its migration, the id cache.

A series is one (tenant, entity, attribute, datasetId).  History rows carry the series' integer
id and the observation time as integer microseconds, and are indexed on just those two.  In
schema version 1 each row carried the tenant, the entity id and the attribute IRI (about 100
bytes) and was indexed on them: with 1,000 devices a batch upsert's rows landed on 1,000 pages of
an index kept half full by page splits, and inserting a history row cost 11.5 us of SQLite
against 4-5 us now (benchmarks/README "What limits us").

Series rows are never deleted, so an id once committed stays valid for every connection and
can be remembered without asking SQLite again; deleting history deletes the rows, and a series
without rows is invisible (``_history_attrs`` asks for rows).
"""

from __future__ import annotations

import functools
import logging
import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from city_platform.storage.base import HistoryRow

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
_SERIES_TABLE = """
CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    entity_id TEXT NOT NULL,
    attr TEXT NOT NULL,
    dataset_id TEXT NOT NULL,  -- '' for the default instance (a datasetId is a URI, never '')
    UNIQUE (tenant, entity_id, attr, dataset_id)
)"""
_HISTORY_TABLE = """
CREATE TABLE IF NOT EXISTS history (
    series INTEGER NOT NULL,
    observed_at INTEGER,  -- microseconds since 1970-01-01T00:00:00Z, NULL without observedAt
    modified_at TEXT NOT NULL,  -- a sortable UTC key (entities.utc_key)
    instance_id TEXT NOT NULL,
    doc BLOB NOT NULL
)"""
SCHEMA = f"""
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
{_SERIES_TABLE};
{_HISTORY_TABLE};
CREATE INDEX IF NOT EXISTS history_by_time ON history (series, observed_at);
CREATE TABLE IF NOT EXISTS subscriptions (
    tenant TEXT NOT NULL,
    id TEXT NOT NULL,
    doc BLOB NOT NULL,
    PRIMARY KEY (tenant, id)
);
"""
_KEYS_PER_QUERY = 400  # (series, observed_at) pairs: 800 parameters a query
KEPT = 500_000  # series ids remembered (about 200 bytes each); beyond it the cache starts over

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_NAIVE_EPOCH = datetime(1970, 1, 1)  # key_of's arithmetic, UTC by definition
_MICROSECOND = timedelta(microseconds=1)


@functools.lru_cache(maxsize=65536)
def micros(key: str) -> int:
    """A sortable UTC key (``2026-01-01T00:00:00.000000Z``) as microseconds since the epoch.

    Cached: readings of one batch share their milliseconds."""
    return (datetime.fromisoformat(key) - _EPOCH) // _MICROSECOND


def key_of(value: int) -> str:
    """The sortable UTC key of ``value`` microseconds (the inverse of :func:`micros`)."""
    # isoformat pads the year to four digits (strftime's %Y does not below 1000).
    return (_NAIVE_EPOCH + timedelta(microseconds=value)).isoformat(timespec="microseconds") + "Z"


def micros_or_none(key: str | None) -> int | None:
    """:func:`micros` of an observation time that may be absent (a Relationship's)."""
    return None if key is None else micros(key)


def version(db: sqlite3.Connection) -> int | None:
    """The database's schema version; None for a new database."""
    db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
    row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    return None if row is None else int(row[0])


def create(db: sqlite3.Connection, found: int | None) -> None:
    """Create the tables of a new database, or migrate one of version ``found``."""
    if found == 1:
        _migrate_from_1(db)  # one transaction: an interrupted migration leaves version 1
    db.executescript(SCHEMA)
    if found is None:
        db.execute("INSERT INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))


def _migrate_from_1(db: sqlite3.Connection) -> None:
    (count,) = db.execute("SELECT count(*) FROM history").fetchone()
    log.info("SQLite: migrating %d history rows to schema version 2 (history by series)", count)
    db.create_function("r197_micros", 1, micros_or_none, deterministic=True)
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("ALTER TABLE history RENAME TO history_v1")
        db.execute("DROP INDEX IF EXISTS history_by_time")
        db.execute(_SERIES_TABLE)
        db.execute(_HISTORY_TABLE)
        db.execute(
            "INSERT INTO series (tenant, entity_id, attr, dataset_id) "
            "SELECT DISTINCT tenant, entity_id, attr, coalesce(dataset_id, '') FROM history_v1 "
            "ORDER BY 1, 2, 3, 4"
        )
        # In rowid order: the new rowids keep the old tie-break between equal times.
        db.execute(
            "INSERT INTO history (series, observed_at, modified_at, instance_id, doc) "
            "SELECT s.id, r197_micros(h.observed_at), h.modified_at, h.instance_id, h.doc "
            "FROM history_v1 h JOIN series s ON s.tenant = h.tenant "
            "AND s.entity_id = h.entity_id AND s.attr = h.attr "
            "AND s.dataset_id = coalesce(h.dataset_id, '') ORDER BY h.rowid"
        )
        db.execute("CREATE INDEX history_by_time ON history (series, observed_at)")
        db.execute("DROP TABLE history_v1")
        db.execute("UPDATE meta SET value='2' WHERE key='schema_version'")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    log.info("SQLite: migration to schema version 2 done")


class SeriesIds:
    """Series ids by (tenant, entity, attribute, datasetId), remembered once committed."""

    def __init__(self) -> None:
        self._ids: dict[tuple[str, str, str, str], int] = {}

    def ids(
        self, db: sqlite3.Connection, tenant: str, history: Iterable[HistoryRow]
    ) -> tuple[list[int], dict[tuple[str, str, str, str], int]]:
        """The series id of every row, creating series as needed (inside the caller's write
        transaction), and the ids that are new to this cache: pass them to :meth:`committed`
        after the commit, since a rollback takes back the series rows it created."""
        known = self._ids
        fresh: dict[tuple[str, str, str, str], int] = {}
        out: list[int] = []
        for h in history:
            key = (tenant, h.entity_id, h.attr, h.dataset_id or "")
            found = known.get(key)
            if found is None:
                found = fresh.get(key)
                if found is None:
                    found = fresh[key] = self._find_or_create(db, key)
            out.append(found)
        return out, fresh

    @staticmethod
    def _find_or_create(db: sqlite3.Connection, key: tuple[str, str, str, str]) -> int:
        row = db.execute(
            "SELECT id FROM series WHERE tenant=? AND entity_id=? AND attr=? AND dataset_id=?", key
        ).fetchone()
        if row is not None:
            return int(row[0])
        cur = db.execute(
            "INSERT INTO series (tenant, entity_id, attr, dataset_id) VALUES (?,?,?,?)", key
        )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def committed(self, fresh: dict[tuple[str, str, str, str], int]) -> None:
        if not fresh:
            return
        if len(self._ids) + len(fresh) > KEPT:
            self._ids.clear()
        self._ids.update(fresh)

    def clear(self) -> None:
        self._ids.clear()


def stored_at(
    db: sqlite3.Connection, keys: Iterable[tuple[int, int | None] | None]
) -> dict[tuple[int, int], list[dict[str, Any]]]:
    """The stored instances' documents at each (series, observed_at micros) key that has any.
    A join with the keys as a VALUES table: SQLite searches history_by_time once per key
    (0.4 us each), where ``(series, observed_at) IN (VALUES ...)`` scanned the whole table."""
    wanted = list({k for k in keys if k is not None and k[1] is not None})
    found: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for start in range(0, len(wanted), _KEYS_PER_QUERY):
        chunk = wanted[start : start + _KEYS_PER_QUERY]
        rows = db.execute(
            "SELECT h.series, h.observed_at, h.doc FROM (VALUES "
            + ",".join(["(?,?)"] * len(chunk))
            + ") AS k CROSS JOIN history AS h "
            "ON h.series = k.column1 AND h.observed_at = k.column2",
            [x for key in chunk for x in key],
        )
        for sid, at, doc in rows:
            found.setdefault((sid, at), []).append(orjson.loads(doc))
    return found


def of_entity(
    db: sqlite3.Connection, tenant: str, entity_id: str, attr: str | None = None
) -> dict[int, tuple[str, str | None]]:
    """The series of an entity (of one attribute): id -> (attribute IRI, datasetId or None)."""
    sql = "SELECT id, attr, dataset_id FROM series WHERE tenant=? AND entity_id=?"
    params: tuple[str, ...] = (tenant, entity_id)
    if attr is not None:
        sql += " AND attr=?"
        params = (*params, attr)
    return {sid: (a, ds or None) for sid, a, ds in db.execute(sql, params)}
