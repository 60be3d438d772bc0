"""The storage interface every backend implements.

Backends store and find; they know nothing of contexts, representations or NGSI-LD merge rules,
which live in :mod:`city_platform.broker`.  Everything is keyed by tenant ("" is the default
tenant, CIM 009 4.14) and by expanded IRIs.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

if TYPE_CHECKING:
    from city_platform.query.geo import GeoQuery

Entity = dict[str, Any]


class HistoryRow(NamedTuple):
    """One attribute instance as it was written at one time (the temporal representation, 4.5.7).

    A named tuple, not a frozen dataclass: one is built per reading on the ingestion hot path,
    and a frozen dataclass's ``__init__`` (``object.__setattr__`` per field) was 5 % of batch
    upsert."""

    entity_id: str
    attr: str
    dataset_id: str | None
    observed_at: str | None  # sortable UTC key, see entities.utc_key
    modified_at: str
    instance_id: str
    instance: dict[str, Any]


@dataclass(frozen=True, slots=True)
class EntityFilter:
    """What a backend can filter on cheaply; q and geo-queries are applied by the caller."""

    ids: frozenset[str] | None = None
    types: frozenset[str] | None = None
    id_pattern: str | None = None
    # Keep entities that have at least one of these attributes (5.7.2 ``attrs``).
    attrs: frozenset[str] | None = None
    # The geo-query (4.10) on the expanded ``geo_attr``: a hint, the caller still applies it;
    # a backend may use it to skip entities that cannot match (PostGIS).
    geo: GeoQuery | None = None
    geo_attr: str = ""


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    entity_ids: frozenset[str]
    attrs: frozenset[str] | None = None
    timerel: Literal["before", "after", "between"] | None = None
    time_at: str | None = None  # UTC keys
    end_time_at: str | None = None
    timeproperty: Literal["observedAt", "modifiedAt", "createdAt"] = "observedAt"
    last_n: int | None = None  # per entity and attribute
    first_n: int | None = None  # per entity and attribute, the oldest (ignored with last_n)


class Storage(ABC):
    """An entity store with attribute history and subscriptions, per tenant."""

    async def __aenter__(self) -> Storage:
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @abstractmethod
    async def open(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...

    @abstractmethod
    async def tenant_exists(self, tenant: str) -> bool: ...

    @abstractmethod
    async def get_entities(
        self, tenant: str, ids: Iterable[str], *, shared: bool = False
    ) -> dict[str, Entity]:
        """The stored entities of ``ids`` that exist.  With ``shared`` the caller promises not
        to change the documents, and a backend may hand out ones it keeps (a cache)."""

    @abstractmethod
    async def insert_entity(self, tenant: str, entity: Entity, history: list[HistoryRow]) -> bool:
        """Insert unless the id exists; returns False (and writes nothing) when it does."""

    @abstractmethod
    async def write_entities(
        self, tenant: str, entities: list[Entity], history: list[HistoryRow]
    ) -> None:
        """Insert or replace whole entities and append history, atomically."""

    @abstractmethod
    async def delete_entities(self, tenant: str, ids: Iterable[str]) -> set[str]:
        """Delete entities with their history; returns the ids that existed."""

    @abstractmethod
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
        """Matching entities in a stable order, a page of them, and the total when ``count``."""

    @abstractmethod
    async def history(self, tenant: str, query: HistoryQuery) -> list[HistoryRow]:
        """History rows, oldest first within each entity and attribute."""

    @abstractmethod
    async def delete_history(
        self, tenant: str, entity_id: str, attr: str | None, dataset_id: str | None = None
    ) -> int: ...

    @abstractmethod
    async def replace_history_instance(
        self, tenant: str, entity_id: str, attr: str, row: HistoryRow
    ) -> bool:
        """Replace the history instance with ``row.instance_id``; False when there is none."""

    @abstractmethod
    async def delete_history_instance(
        self, tenant: str, entity_id: str, attr: str, instance_id: str
    ) -> bool:
        """Delete one history instance; False when there is none."""

    @abstractmethod
    async def put_subscription(self, tenant: str, sub_id: str, doc: dict[str, Any]) -> None: ...

    @abstractmethod
    async def get_subscription(self, tenant: str, sub_id: str) -> dict[str, Any] | None: ...

    @abstractmethod
    async def list_subscriptions(
        self, tenant: str | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        """(tenant, doc) pairs; every tenant's when ``tenant`` is None."""

    @abstractmethod
    async def delete_subscription(self, tenant: str, sub_id: str) -> bool: ...

    # Hosted @contexts (CIM 009 5.13.2), per tenant; ``doc`` is ContextEntry.stored().
    @abstractmethod
    async def put_jsonld_context(self, tenant: str, local_id: str, doc: dict[str, Any]) -> None: ...

    @abstractmethod
    async def list_jsonld_contexts(self) -> list[tuple[str, str, dict[str, Any]]]:
        """(tenant, local id, doc) of every tenant's hosted @contexts, oldest first."""

    @abstractmethod
    async def delete_jsonld_context(self, tenant: str, local_id: str) -> bool: ...

    # Context source registrations and csource subscriptions (CIM 009 5.9, 5.11): documents
    # keyed by ``kind`` ("registration" / "subscription"), tenant and id.
    @abstractmethod
    async def put_csource_doc(
        self, kind: str, tenant: str, doc_id: str, doc: dict[str, Any]
    ) -> None: ...

    @abstractmethod
    async def list_csource_docs(self, kind: str) -> list[tuple[str, dict[str, Any]]]:
        """(tenant, doc) of every tenant's documents of ``kind``, oldest first."""

    @abstractmethod
    async def delete_csource_doc(self, kind: str, tenant: str, doc_id: str) -> bool: ...

    # Several platform processes on one database (the PostgreSQL backend).  A backend that one
    # process uses alone keeps these defaults: nothing to hear about, and every task is its own.
    def on_subscription_change(self, callback: Callable[[str, str], None]) -> None:  # noqa: B027
        """Call ``callback(tenant, sub_id)`` after any process stored or deleted that
        subscription (this one's own writes included), so each process knows every one."""

    async def lead(self, name: str) -> bool:
        """True when this process is the one that does the once-per-city work ``name`` (a
        periodic subscription's notifications); the others skip it."""
        return True
