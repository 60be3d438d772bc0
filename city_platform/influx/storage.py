"""A :class:`Storage` that hands every stored Property instance to the InfluxDB sink.

It wraps any backend (SQLite, PostgreSQL) and changes none of its behaviour: each write is
passed on, and once the backend has committed it, its history rows become outbox points
(lines.py).  Only the writes that carry history rows matter: inserting, writing and replacing
history instances (CIM 009 4.5.7); deletions are not propagated (InfluxDB keeps what it saw).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from city_platform.influx.lines import lines
from city_platform.influx.sink import InfluxSink
from city_platform.storage.base import Entity, EntityFilter, HistoryQuery, HistoryRow, Storage


def _types(entities: Iterable[Entity]) -> dict[str, str]:
    out = {}
    for entity in entities:
        types = entity.get("type")
        if types:
            out[entity["id"]] = types[0] if isinstance(types, list) else str(types)
    return out


class InfluxSinkStorage(Storage):
    """``inner`` with its Property history also sent to InfluxDB through ``sink``."""

    def __init__(self, inner: Storage, sink: InfluxSink) -> None:
        self.inner = inner
        self.sink = sink

    async def open(self) -> None:
        await self.inner.open()
        await self.sink.start()

    async def close(self) -> None:
        await self.sink.stop()
        await self.inner.close()

    async def tenant_exists(self, tenant: str) -> bool:
        return await self.inner.tenant_exists(tenant)

    async def get_entities(
        self, tenant: str, ids: Iterable[str], *, shared: bool = False
    ) -> dict[str, Entity]:
        return await self.inner.get_entities(tenant, ids, shared=shared)

    async def insert_entity(self, tenant: str, entity: Entity, history: list[HistoryRow]) -> bool:
        inserted = await self.inner.insert_entity(tenant, entity, history)
        if inserted and history:
            self.sink.add(lines(tenant, _types([entity]), history))
        return inserted

    async def write_entities(
        self, tenant: str, entities: list[Entity], history: list[HistoryRow]
    ) -> None:
        await self.inner.write_entities(tenant, entities, history)
        if history:
            self.sink.add(lines(tenant, _types(entities), history))

    async def delete_entities(self, tenant: str, ids: Iterable[str]) -> set[str]:
        return await self.inner.delete_entities(tenant, ids)

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
        return await self.inner.find_entities(
            tenant, where, predicate=predicate, limit=limit, offset=offset, count=count
        )

    async def history(self, tenant: str, query: HistoryQuery) -> list[HistoryRow]:
        return await self.inner.history(tenant, query)

    async def delete_history(
        self, tenant: str, entity_id: str, attr: str | None, dataset_id: str | None = None
    ) -> int:
        return await self.inner.delete_history(tenant, entity_id, attr, dataset_id)

    async def replace_history_instance(
        self, tenant: str, entity_id: str, attr: str, row: HistoryRow
    ) -> bool:
        replaced = await self.inner.replace_history_instance(tenant, entity_id, attr, row)
        if replaced:  # the corrected instance (5.6.13): same series and time, a new value
            found = await self.inner.get_entities(tenant, [entity_id], shared=True)
            self.sink.add(lines(tenant, _types(found.values()), [row]))
        return replaced

    async def delete_history_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str
    ) -> bool:
        return await self.inner.delete_history_instance(tenant, entity_id, attr, instance_id)

    async def put_subscription(self, tenant: str, sub_id: str, doc: dict[str, Any]) -> None:
        await self.inner.put_subscription(tenant, sub_id, doc)

    async def get_subscription(self, tenant: str, sub_id: str) -> dict[str, Any] | None:
        return await self.inner.get_subscription(tenant, sub_id)

    async def list_subscriptions(
        self, tenant: str | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        return await self.inner.list_subscriptions(tenant)

    async def delete_subscription(self, tenant: str, sub_id: str) -> bool:
        return await self.inner.delete_subscription(tenant, sub_id)

    async def put_jsonld_context(self, tenant: str, local_id: str, doc: dict[str, Any]) -> None:
        await self.inner.put_jsonld_context(tenant, local_id, doc)

    async def list_jsonld_contexts(self) -> list[tuple[str, str, dict[str, Any]]]:
        return await self.inner.list_jsonld_contexts()

    async def delete_jsonld_context(self, tenant: str, local_id: str) -> bool:
        return await self.inner.delete_jsonld_context(tenant, local_id)

    async def put_csource_doc(
        self, kind: str, tenant: str, doc_id: str, doc: dict[str, Any]
    ) -> None:
        await self.inner.put_csource_doc(kind, tenant, doc_id, doc)

    async def list_csource_docs(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        return await self.inner.list_csource_docs(kind)

    async def delete_csource_doc(self, kind: str, tenant: str, doc_id: str) -> bool:
        return await self.inner.delete_csource_doc(kind, tenant, doc_id)

    # Several processes on one database (PostgreSQL): the inner backend's, passed through.
    def on_subscription_change(self, callback: Callable[[str, str], None]) -> None:
        self.inner.on_subscription_change(callback)

    async def lead(self, name: str) -> bool:
        return await self.inner.lead(name)
