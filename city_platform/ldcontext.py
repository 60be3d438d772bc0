"""JSON-LD @context handling: the term expansion and compaction NGSI-LD needs, offline first.

NGSI-LD (ETSI GS CIM 009 clause 5.5.7) names types and attributes by IRI; clients use short
terms resolved through an ``@context``.  We implement only the part of JSON-LD 1.1 the API needs:
term definitions (string or ``{"@id": ...}``), compact IRIs (``prefix:suffix``), ``@vocab``, and
context arrays.  The NGSI-LD core context is always applied last so that clients cannot redefine
core terms (clause 5.5.7: "the core @context shall always be implied").

Contexts shipped in ``city_platform/contexts`` are resolved locally (the testbed works with no
internet); any other URL is fetched once over HTTP(S) and cached, and a failure becomes
``LdContextNotAvailable`` (503, clause 5.5.2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

import orjson

from city_platform.errors import BadRequestData, LdContextNotAvailable

log = logging.getLogger(__name__)

CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
DEFAULT_VOCAB = "https://uri.etsi.org/ngsi-ld/default-context/"
NGSI_LD_NS = "https://uri.etsi.org/ngsi-ld/"

# Every published version of the core context resolves to the shipped one: the terms the API
# uses did not change meaning between versions.
_CORE_ALIASES = (
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.3.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.4.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.5.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.6.jsonld",
    "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.7.jsonld",
    CORE_CONTEXT_URL,
)
SHIPPED_FILES = ("ngsi-ld-core-context-v1.8.jsonld", "testbed-context.jsonld")
MAX_CONTEXT_BYTES = 1_000_000
MAX_CONTEXT_DEPTH = 8


def shipped_document(name: str) -> bytes:
    """The bytes of a context file shipped inside the package."""
    if name not in SHIPPED_FILES:
        raise KeyError(name)
    return resources.files("city_platform.contexts").joinpath(name).read_bytes()


def _local_name(url: str) -> str | None:
    """Which shipped file a context URL stands for, if any (also our own served URLs)."""
    if url in _CORE_ALIASES:
        return "ngsi-ld-core-context-v1.8.jsonld"
    last = url.rsplit("/", 1)[-1]
    if last in SHIPPED_FILES and "/contexts/" in url:
        return last
    return None


@dataclass(frozen=True)
class Context:
    """A resolved context: maps terms to IRIs and back.  ``source`` is what the client sent."""

    terms: dict[str, str]
    vocab: str
    source: Any = None
    reverse: dict[str, str] = field(default_factory=dict)
    _cache: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.reverse:
            rev: dict[str, str] = {}
            for term, iri in self.terms.items():
                # First definition wins, except that shorter terms are nicer to read.
                if iri not in rev or len(term) < len(rev[iri]):
                    rev[iri] = term
            self.reverse.update(rev)

    def expand(self, term: str) -> str:
        """Expand a type or attribute name to its IRI (JSON-LD 1.1 IRI expansion, 5.5.7)."""
        iri = self.terms.get(term)
        if iri is not None:
            return iri
        iri = self._cache.get(term)
        if iri is None:
            iri = self._expand(term)
            if len(self._cache) < 100_000:  # bounded: names come from clients
                self._cache[term] = iri
        return iri

    def _expand(self, term: str) -> str:
        prefix, sep, suffix = term.partition(":")
        if sep:
            base = self.terms.get(prefix)
            if base is not None and not suffix.startswith("//"):
                return base + suffix
            return term  # already an absolute IRI (http:, urn:, ...)
        return self.vocab + term

    def compact(self, iri: str) -> str:
        """Compact an IRI to the shortest known term, else vocab-relative, else as is."""
        term = self.reverse.get(iri)
        if term is not None:
            return term
        if iri.startswith(self.vocab):
            rest = iri[len(self.vocab) :]
            if rest and ":" not in rest and rest not in self.terms:
                return rest
        return iri

    @property
    def is_core_only(self) -> bool:
        return self.source is None


def _parse_definitions(raw: dict[str, Any], terms: dict[str, str], vocab: list[str]) -> None:
    """Add one context object's term definitions to ``terms`` (later definitions override)."""
    pending: dict[str, str] = {}
    for key, value in raw.items():
        if key == "@vocab":
            if isinstance(value, str):
                vocab[0] = value
            continue
        if key.startswith("@"):
            continue  # @version, @protected, @language...: no effect on naming
        if isinstance(value, str):
            pending[key] = value
        elif isinstance(value, dict):
            target = value.get("@id")
            pending[key] = target if isinstance(target, str) else ""
        elif value is None:
            terms.pop(key, None)
    # Two passes: a compact IRI may use a prefix defined later in the same object.
    for key, value in pending.items():
        if value.startswith("@"):
            continue  # keyword aliases such as "id": "@id"
        iri = value or (vocab[0] + key)
        prefix, sep, suffix = iri.partition(":")
        if sep and not suffix.startswith("//"):
            base = pending.get(prefix) or terms.get(prefix)
            if base and not base.startswith("@"):
                iri = base + suffix
        terms[key] = iri


class ContextResolver:
    """Turns the context a request names (Link header or ``@context``) into a :class:`Context`.

    Remote documents are fetched with a short timeout and cached for the life of the process.
    """

    def __init__(self, *, allow_remote: bool = True, timeout: float = 5.0) -> None:
        self._allow_remote = allow_remote
        self._timeout = timeout
        self._documents: dict[str, Any] = {}
        self._resolved: dict[bytes, Context] = {}
        self.core = self._build([])

    async def resolve(self, source: Any) -> Context:
        """Resolve a context value: None, a URL, an object, or a list of those."""
        if source is None or source == [] or source in _CORE_ALIASES:
            return self.core
        key = orjson.dumps(source, option=orjson.OPT_SORT_KEYS)
        hit = self._resolved.get(key)
        if hit is not None:
            return hit
        objects: list[dict[str, Any]] = []
        await self._flatten(source, objects, depth=0)
        ctx = self._build(objects, source=source)
        if len(self._resolved) < 1024:
            self._resolved[key] = ctx
        return ctx

    def _build(self, objects: list[dict[str, Any]], source: Any = None) -> Context:
        terms: dict[str, str] = {}
        vocab = [DEFAULT_VOCAB]
        for obj in objects:
            _parse_definitions(obj, terms, vocab)
        core_terms: dict[str, str] = {}
        core_vocab = [DEFAULT_VOCAB]
        _parse_definitions(_core_object(), core_terms, core_vocab)
        terms.update(core_terms)  # the core context cannot be overridden (clause 5.5.7)
        return Context(terms=terms, vocab=vocab[0], source=source)

    async def _flatten(self, source: Any, out: list[dict[str, Any]], *, depth: int) -> None:
        if depth > MAX_CONTEXT_DEPTH:
            raise BadRequestData("@context: too deeply nested (more than 8 levels of imports)")
        if isinstance(source, list):
            for item in source:
                await self._flatten(item, out, depth=depth + 1)
        elif isinstance(source, dict):
            out.append(source)
        elif isinstance(source, str):
            document = await self._document(source)
            inner = document.get("@context") if isinstance(document, dict) else None
            if inner is None:
                raise LdContextNotAvailable(f"@context {source!r} has no '@context' member")
            await self._flatten(inner, out, depth=depth + 1)
        elif source is not None:
            raise BadRequestData("@context must be a URL, an object or an array of those")

    async def _document(self, url: str) -> Any:
        if url in self._documents:
            return self._documents[url]
        local = _local_name(url)
        if local is not None:
            doc = orjson.loads(shipped_document(local))
        elif not url.startswith(("http://", "https://")):
            raise BadRequestData(f"@context entry {url!r} is not an http(s) URL")
        elif not self._allow_remote:
            raise LdContextNotAvailable(f"remote @context {url!r} not allowed by configuration")
        else:
            doc = await self._fetch(url)
        self._documents[url] = doc
        return doc

    async def _fetch(self, url: str) -> Any:
        import httpx  # noqa: PLC0415  # only needed for remote contexts

        log.info("fetching remote @context %s", url)
        try:
            async with httpx.AsyncClient(timeout=self._timeout, follow_redirects=True) as client:
                answer = await client.get(url, headers={"Accept": "application/ld+json"})
                answer.raise_for_status()
                if len(answer.content) > MAX_CONTEXT_BYTES:
                    raise LdContextNotAvailable(f"@context {url!r} is larger than 1 MB")
                return orjson.loads(answer.content)
        except (httpx.HTTPError, orjson.JSONDecodeError) as exc:
            raise LdContextNotAvailable(f"@context {url!r} could not be retrieved: {exc}") from exc


@lru_cache(maxsize=1)
def _core_object() -> dict[str, Any]:
    doc = orjson.loads(shipped_document("ngsi-ld-core-context-v1.8.jsonld"))
    core: dict[str, Any] = doc["@context"]
    return core
