"""The PostgreSQL backend's documents: subscriptions (announced to every platform process on
the channel ``r197_subscriptions``, NOTIFY in the writing transaction), hosted @contexts (CIM 009
5.13.2) and context source documents (5.9, 5.11).  A mixin of
:class:`city_platform.storage.postgres.PostgresStorage`."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

CHANNEL = "r197_subscriptions"


def _count(status: str) -> int:
    return int(status.rsplit(" ", 1)[-1])


class PgDocuments:
    """Needs ``pool`` and ``_ensure_tenant`` of the storage it is mixed into."""

    @property
    def pool(self) -> asyncpg.Pool:
        raise NotImplementedError

    async def _ensure_tenant(self, db: asyncpg.Connection, tenant: str) -> None:
        raise NotImplementedError

    async def put_subscription(self, tenant: str, sub_id: str, doc: dict[str, Any]) -> None:
        async with self.pool.acquire() as db, db.transaction():
            await self._ensure_tenant(db, tenant)
            # seq=excluded.seq: a replaced subscription moves to the end, as SQLite's REPLACE.
            await db.execute(
                "INSERT INTO subscriptions (tenant, id, doc) VALUES ($1, $2, $3) ON CONFLICT "
                "(tenant, id) DO UPDATE SET doc=excluded.doc, seq=excluded.seq",
                tenant, sub_id, orjson.dumps(doc),
            )  # fmt: skip
            await db.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{tenant}\x1f{sub_id}")

    async def get_subscription(self, tenant: str, sub_id: str) -> dict[str, Any] | None:
        doc = await self.pool.fetchval(
            "SELECT doc FROM subscriptions WHERE tenant=$1 AND id=$2", tenant, sub_id
        )
        return None if doc is None else dict(orjson.loads(doc))

    async def list_subscriptions(
        self, tenant: str | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.pool.fetch(
            "SELECT tenant, doc FROM subscriptions WHERE $1::text IS NULL OR tenant=$1 "
            "ORDER BY seq",
            tenant,
        )
        return [(t, dict(orjson.loads(d))) for t, d in rows]

    async def delete_subscription(self, tenant: str, sub_id: str) -> bool:
        async with self.pool.acquire() as db, db.transaction():
            status = await db.execute(
                "DELETE FROM subscriptions WHERE tenant=$1 AND id=$2", tenant, sub_id
            )
            await db.execute("SELECT pg_notify($1, $2)", CHANNEL, f"{tenant}\x1f{sub_id}")
        return _count(status) > 0

    async def put_jsonld_context(self, tenant: str, local_id: str, doc: dict[str, Any]) -> None:
        await self.pool.execute(
            "INSERT INTO jsonld_contexts (tenant, id, doc) VALUES ($1, $2, $3) ON CONFLICT "
            "(tenant, id) DO UPDATE SET doc=excluded.doc, seq=excluded.seq",
            tenant, local_id, orjson.dumps(doc),
        )  # fmt: skip

    async def list_jsonld_contexts(self) -> list[tuple[str, str, dict[str, Any]]]:
        rows = await self.pool.fetch("SELECT tenant, id, doc FROM jsonld_contexts ORDER BY seq")
        return [(t, i, dict(orjson.loads(d))) for t, i, d in rows]

    async def delete_jsonld_context(self, tenant: str, local_id: str) -> bool:
        status = await self.pool.execute(
            "DELETE FROM jsonld_contexts WHERE tenant=$1 AND id=$2", tenant, local_id
        )
        return _count(status) > 0

    async def put_csource_doc(
        self, kind: str, tenant: str, doc_id: str, doc: dict[str, Any]
    ) -> None:
        async with self.pool.acquire() as db:
            await self._ensure_tenant(db, tenant)
            await db.execute(
                "INSERT INTO csources (kind, tenant, id, doc) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (kind, tenant, id) DO UPDATE SET doc=excluded.doc",
                kind, tenant, doc_id, orjson.dumps(doc),
            )  # fmt: skip

    async def list_csource_docs(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        rows = await self.pool.fetch(
            "SELECT tenant, doc FROM csources WHERE kind=$1 ORDER BY seq", kind
        )
        return [(t, dict(orjson.loads(d))) for t, d in rows]

    async def delete_csource_doc(self, kind: str, tenant: str, doc_id: str) -> bool:
        status = await self.pool.execute(
            "DELETE FROM csources WHERE kind=$1 AND tenant=$2 AND id=$3", kind, tenant, doc_id
        )
        return _count(status) > 0
