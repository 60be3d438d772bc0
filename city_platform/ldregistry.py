"""The @contexts the broker stores and serves: CIM 009 clause 5.13 (the @context API).

Three kinds of entry (CIM 009 5.13.1, ContextInfo 5.2.39):

- ``Hosted``: a @context a client added with Add @context (5.13.2).  Kept in storage, per
  tenant (5.5.10: a tenant is the boundary every operation applies within), so another tenant
  can neither list, serve nor delete it.  It is resolvable by its URL from any request, as any
  published URL would be.
- ``Cached``: a copy of a remote @context the broker fetched while resolving a request, plus the
  shipped core @context (the broker "downloads" it once, from its own package).  Shared by every
  tenant: they are copies of public documents.  Kept in memory only.
- ``ImplicitlyCreated``: a @context the broker made itself from the inline or array @context of
  a request that has to refer to it later by one URL (a subscription whose notifications are
  ``application/json`` and so carry a Link header, 5.8.1 / 5.13.1).  Kept in storage, per tenant.

The registry only keeps the entries; the HTTP binding is ``api/routes/contexts.py`` and the
resolution of URLs to documents is :class:`city_platform.ldcontext.ContextResolver`.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

Kind = Literal["Hosted", "Cached", "ImplicitlyCreated"]
KINDS: tuple[Kind, ...] = ("Hosted", "Cached", "ImplicitlyCreated")
CONTEXTS_PATH = "/ngsi-ld/v1/jsonldContexts/"
MAX_ENTRIES = 10_000  # per kind and tenant: a bound on what clients can make us keep


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class ContextEntry:
    """One stored @context with the usage figures ContextInfo reports (5.2.39)."""

    local_id: str
    kind: Kind
    document: dict[str, Any]  # the whole JSON-LD document, ``{"@context": ...}``
    url: str | None = None  # Cached: the remote URL; Hosted/Implicit: None (ours, by local id)
    tenant: str | None = None  # None: shared (Cached)
    created_at: str = field(default_factory=_now)
    last_usage: str | None = None
    hits: int = 0
    extra_info: dict[str, Any] | None = None

    def public_url(self, base: str) -> str:
        """The URL clients use: the remote one (Cached), else ours under ``base``."""
        return (
            self.url if self.url is not None else base.rstrip("/") + CONTEXTS_PATH + self.local_id
        )

    def info(self, base: str) -> dict[str, Any]:
        """The ContextInfo object (CIM 009 5.2.39) of this entry."""
        out: dict[str, Any] = {
            "URL": self.public_url(base),
            "localId": self.local_id,
            "kind": self.kind,
            "createdAt": self.created_at,
        }
        if self.last_usage is not None:
            out["lastUsage"] = self.last_usage
        out["numberOfHits"] = self.hits
        if self.extra_info:
            out["extraInfo"] = self.extra_info
        return out

    def stored(self) -> dict[str, Any]:
        """What storage keeps of a Hosted entry (the usage counters are not durable)."""
        return {"document": self.document, "createdAt": self.created_at, "kind": self.kind}


def local_id_of(url: str) -> str | None:
    """The local id a URL of our @context API names (any host: ids are random UUIDs), if any."""
    path = urlsplit(url).path if "://" in url else url
    _, sep, tail = path.rpartition(CONTEXTS_PATH)
    if not sep:
        return None
    local = unquote(tail)
    return local or None


Persist = Callable[[str, str, dict[str, Any] | None], Awaitable[None]]


class ContextRegistry:
    """Hosted, Cached and ImplicitlyCreated @contexts, looked up by local id or URL.

    ``persist(tenant, local_id, stored_or_None)`` writes Hosted entries through to storage
    (None deletes); the app loads them back with :meth:`load_hosted` when storage opens.
    """

    def __init__(self) -> None:
        self._by_id: dict[str, ContextEntry] = {}
        self._by_url: dict[str, ContextEntry] = {}  # Cached only
        self.persist: Persist | None = None

    def __iter__(self) -> Iterator[ContextEntry]:
        return iter(list(self._by_id.values()))

    def __len__(self) -> int:
        return len(self._by_id)

    def load_stored(self, rows: list[tuple[str, str, dict[str, Any]]]) -> None:
        for tenant, local_id, doc in rows:
            kind: Kind = "ImplicitlyCreated" if doc.get("kind") == "ImplicitlyCreated" else "Hosted"
            entry = ContextEntry(
                local_id=local_id,
                kind=kind,
                document=doc["document"],
                tenant=tenant,
                created_at=str(doc.get("createdAt") or _now()),
            )
            self._by_id[local_id] = entry

    def _count(self, kind: Kind, tenant: str | None) -> int:
        return sum(1 for e in self._by_id.values() if e.kind == kind and e.tenant == tenant)

    async def add_hosted(self, tenant: str, document: dict[str, Any]) -> ContextEntry:
        """Add @context (5.13.2): a new Hosted entry under a fresh local id."""
        self._check_room("Hosted", tenant)
        entry = ContextEntry(local_id=uuid.uuid4().hex, kind="Hosted", document=document)
        entry.tenant = tenant
        if self.persist is not None:
            await self.persist(tenant, entry.local_id, entry.stored())
        self._by_id[entry.local_id] = entry
        return entry

    async def add_implicit(self, tenant: str, context: Any) -> ContextEntry:
        """An ImplicitlyCreated entry holding ``context`` (an array or object), 5.13.1.

        The same value under the same tenant gives the same entry, so that re-creating a
        subscription does not pile up copies.
        """
        document = {"@context": context}
        for entry in self._by_id.values():
            if (
                entry.kind == "ImplicitlyCreated"
                and entry.tenant == tenant
                and entry.document == document
            ):
                return entry
        self._check_room("ImplicitlyCreated", tenant)
        entry = ContextEntry(
            local_id=uuid.uuid4().hex, kind="ImplicitlyCreated", document=document, tenant=tenant
        )
        if self.persist is not None:  # stored subscriptions name it after a restart too
            await self.persist(tenant, entry.local_id, entry.stored())
        self._by_id[entry.local_id] = entry
        return entry

    def note_cached(
        self, url: str, document: dict[str, Any], *, extra: dict[str, Any] | None = None
    ) -> ContextEntry:
        """Record (or refresh) the Cached copy of a remote @context."""
        entry = self._by_url.get(url)
        if entry is not None:
            entry.document = document
            return entry
        if len(self._by_url) >= MAX_ENTRIES:
            # The oldest fetched copy goes; entries noted with ``extra`` (the shipped core
            # @context) are never dropped to make room.
            oldest = next((e for e in self._by_url.values() if e.extra_info is None), None)
            if oldest is not None:
                self.drop(oldest)
        entry = ContextEntry(
            local_id=uuid.uuid4().hex, kind="Cached", document=document, url=url, extra_info=extra
        )
        self._by_id[entry.local_id] = entry
        self._by_url[url] = entry
        return entry

    def _check_room(self, kind: Kind, tenant: str | None) -> None:
        from city_platform.errors import BadRequestData  # noqa: PLC0415  # cycle-free import

        if self._count(kind, tenant) >= MAX_ENTRIES:
            raise BadRequestData(f"too many {kind} @contexts (at most {MAX_ENTRIES} per tenant)")

    def cached(self, url: str) -> ContextEntry | None:
        return self._by_url.get(url)

    def by_local_id(self, local_id: str) -> ContextEntry | None:
        """Any tenant's entry (resolution of a URL of ours in a request)."""
        return self._by_id.get(local_id)

    def find(self, tenant: str, key: str) -> ContextEntry | None:
        """The entry a client names by local id, by its URL or by our URL of it (5.13.4)."""
        entry = self._by_id.get(key) or self._by_url.get(key)
        if entry is None:
            local = local_id_of(key)
            entry = self._by_id.get(local) if local else None
        if entry is None or entry.tenant not in (None, tenant):
            return None  # another tenant's entry is as absent as a missing one (5.5.10)
        return entry

    def visible(self, tenant: str, kind: Kind | None = None) -> list[ContextEntry]:
        """List @contexts (5.13.3): the tenant's own entries and the shared Cached ones."""
        return [
            e
            for e in self._by_id.values()
            if e.tenant in (None, tenant) and (kind is None or e.kind == kind)
        ]

    def hit(self, key: str) -> None:
        """Count one use of the @context a request named by URL (numberOfHits, lastUsage)."""
        entry = self._by_url.get(key)
        if entry is None:
            local = local_id_of(key)
            entry = self._by_id.get(local) if local else None
        if entry is not None:
            entry.hits += 1
            entry.last_usage = _now()

    async def delete(self, entry: ContextEntry) -> None:
        """Delete @context (5.13.5) without reload."""
        if entry.kind != "Cached" and entry.tenant is not None and self.persist is not None:
            await self.persist(entry.tenant, entry.local_id, None)
        self.drop(entry)

    def drop(self, entry: ContextEntry) -> None:
        self._by_id.pop(entry.local_id, None)
        if entry.url is not None and self._by_url.get(entry.url) is entry:
            del self._by_url[entry.url]
