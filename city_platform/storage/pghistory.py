"""The PostgreSQL backend's attribute history (CIM 009 4.5.7, the temporal API 5.7.3): reading,
deleting and replacing instances, by series as in the SQLite backend (city_platform/storage/
series.py).  A mixin of :class:`city_platform.storage.postgres.PostgresStorage`."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from city_platform.storage import series
from city_platform.storage.base import HistoryQuery, HistoryRow

_HISTORY_COLS = "h.series, h.observed_at, h.modified_at, h.instance_id, h.doc"
_OF_ENTITY = "SELECT id FROM series WHERE tenant=$1 AND entity_id=$2"
SeriesKey = tuple[str, str, str, str]


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


class PgHistory:
    """Needs ``pool``, ``_series_ids`` and ``_committed`` of the storage it is mixed into."""

    @property
    def pool(self) -> asyncpg.Pool:
        raise NotImplementedError

    async def _series_ids(
        self, db: asyncpg.Connection, tenant: str, history: list[HistoryRow]
    ) -> tuple[list[int], dict[SeriesKey, int]]:
        raise NotImplementedError

    def _committed(self, fresh: dict[SeriesKey, int]) -> None:
        raise NotImplementedError

    async def history(self, tenant: str, query: HistoryQuery) -> list[HistoryRow]:
        by_observed = query.timeproperty == "observedAt"
        column = "observed_at" if by_observed else "modified_at"

        def bound(key: str | None) -> int | str | None:
            return series.micros(key) if by_observed and key is not None else key

        cond: list[str] = []
        extra: list[Any] = []
        if query.timerel == "before":
            cond.append(f"AND h.{column} < $2")
            extra.append(bound(query.time_at))
        elif query.timerel == "after":
            cond.append(f"AND h.{column} >= $2")  # 'after' includes timeAt in practice (6.3.10)
            extra.append(bound(query.time_at))
        elif query.timerel == "between":
            cond.append(f"AND h.{column} >= $2 AND h.{column} < $3")
            extra.extend([bound(query.time_at), bound(query.end_time_at)])
        elif by_observed:
            cond.append("AND h.observed_at IS NOT NULL")
        n = len(extra) + 2
        rows: list[HistoryRow] = []
        async with self.pool.acquire() as db:
            for entity_id in sorted(query.entity_ids):
                of_entity = {
                    r[0]: (r[1], r[2] or None)
                    for r in await db.fetch(
                        "SELECT id, attr, dataset_id FROM series WHERE tenant=$1 AND entity_id=$2",
                        tenant,
                        entity_id,
                    )
                }
                attrs = sorted(query.attrs) if query.attrs is not None else sorted(
                    {a for a, _ in of_entity.values()}
                )  # fmt: skip
                for attr in attrs:
                    ids = [sid for sid, (a, _) in of_entity.items() if a == attr]
                    if not ids:
                        continue
                    where = f"WHERE h.series = ANY($1::bigint[]) {' '.join(cond)}"
                    params: list[Any] = [ids, *extra]
                    if query.last_n is not None:
                        stmt = (
                            f"SELECT * FROM (SELECT {_HISTORY_COLS}, h.seq FROM history h {where} "
                            f"ORDER BY h.{column} DESC, h.seq DESC LIMIT ${n}) h "
                            f"ORDER BY h.{column}, h.seq"
                        )
                        params.append(query.last_n)
                    else:
                        stmt = f"SELECT {_HISTORY_COLS}, h.seq FROM history h {where} "
                        stmt += f"ORDER BY h.{column}, h.seq"
                        if query.first_n is not None:
                            stmt += f" LIMIT ${n}"
                            params.append(query.first_n)
                    for sid, observed, modified, instance_id, doc, _ in await db.fetch(
                        stmt, *params
                    ):
                        name, dataset_id = of_entity[sid]
                        rows.append(
                            HistoryRow(
                                entity_id, name, dataset_id,
                                None if observed is None else series.key_of(observed),
                                modified, instance_id, orjson.loads(doc),
                            )
                        )  # fmt: skip
        return rows

    async def delete_history(
        self, tenant: str, entity_id: str, attr: str | None, dataset_id: str | None = None
    ) -> int:
        sql = _OF_ENTITY
        params: list[Any] = [tenant, entity_id]
        if attr is not None:
            params.append(attr)
            sql += f" AND attr=${len(params)}"
            if dataset_id is not None:
                params.append(dataset_id)  # '' is the default instance, as in the table
                sql += f" AND dataset_id=${len(params)}"
        return _count(
            await self.pool.execute(f"DELETE FROM history WHERE series IN ({sql})", *params)
        )

    async def replace_history_instance(
        self, tenant: str, entity_id: str, attr: str, row: HistoryRow
    ) -> bool:
        async with self.pool.acquire() as db, db.transaction():
            (sid,), fresh = await self._series_ids(db, tenant, [row])
            status = await db.execute(
                "UPDATE history SET series=$1, observed_at=$2, modified_at=$3, doc=$4 "
                "WHERE series IN (SELECT id FROM series WHERE tenant=$5 AND entity_id=$6 "
                "AND attr=$7) AND instance_id=$8",
                sid, series.micros_or_none(row.observed_at), row.modified_at,
                orjson.dumps(row.instance), tenant, entity_id, attr, row.instance_id,
            )  # fmt: skip
        self._committed(fresh)
        return _count(status) > 0

    async def delete_history_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str
    ) -> bool:
        status = await self.pool.execute(
            f"DELETE FROM history WHERE series IN ({_OF_ENTITY} AND attr=$3) AND instance_id=$4",
            tenant, entity_id, attr, instance_id,
        )  # fmt: skip
        return _count(status) > 0
