"""JSON-LD @context handling: the term expansion and compaction NGSI-LD needs, offline first.

NGSI-LD (ETSI GS CIM 009 clause 5.5.7) names types and attributes by IRI; clients use short
terms resolved through an ``@context``.  We implement only the part of JSON-LD 1.1 the API needs:
term definitions (string or ``{"@id": ...}``), compact IRIs (``prefix:suffix``), ``@vocab``, and
context arrays.  The NGSI-LD core context is implied and protected: whatever its position it has
absolute precedence (CIM 009 4.4, 5.5.7), so a user term naming a core term keeps the core
meaning; a user @context with a JSON-LD scoped context is BadRequestData (5.5.7); a user term
protected by a user context keeps its IRI (JSON-LD 1.1 4.1.11, else BadRequestData).

Contexts shipped in ``city_platform/contexts`` (every core context version, v1.9 included) and
those of ``--context-dir`` are resolved locally (the testbed works with no internet); @contexts
hosted by our @context API (5.13) are resolved from the registry; any other URL is fetched once
over HTTP(S), at most 1 MiB within 5 s, without blocking the event loop, and kept as a Cached
entry; a failure becomes ``LdContextNotAvailable`` (503, clause 5.5.2).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import orjson

from city_platform.allowlist import EndpointAllowList
from city_platform.errors import BadRequestData, LdContextNotAvailable
from city_platform.ldregistry import ContextRegistry, local_id_of
from city_platform.limits import header_number

log = logging.getLogger(__name__)

CORE_CONTEXT_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.8.jsonld"
CORE_CONTEXT_V19_URL = "https://uri.etsi.org/ngsi-ld/v1/ngsi-ld-core-context-v1.9.jsonld"
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
    # v1.9 (CIM 009 v1.9.1) adds terms for features we do not serve; the shipped v1.8 copy
    # stands for it, never fetched.
    CORE_CONTEXT_V19_URL,
)
SHIPPED_FILES = ("ngsi-ld-core-context-v1.8.jsonld", "testbed-context.jsonld")
MAX_CONTEXT_BYTES = 1024 * 1024  # a remote @context larger than 1 MiB is refused
FETCH_TIMEOUT = 5.0  # seconds for a whole remote fetch (connect, headers and body)
MAX_CONTEXT_DEPTH = 8
_GEN_DELIMS = frozenset(":/?#[]@")  # RFC 3986 gen-delims, the ends of a prefix IRI


def shipped_document(name: str) -> bytes:
    """The bytes of a context file shipped inside the package."""
    if name not in SHIPPED_FILES:
        raise KeyError(name)
    return resources.files("city_platform.contexts").joinpath(name).read_bytes()


def is_core_url(url: str) -> bool:
    """Whether a URL names (some version of) the NGSI-LD core context."""
    return url in _CORE_ALIASES


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
    # IRI -> compact form, for IRIs that no term names (see compact()).
    _compacted: dict[str, str] = field(default_factory=dict, repr=False, compare=False)
    # (namespace IRI, prefix term) of the terms usable as a compact IRI prefix, longest first.
    _prefixes: list[tuple[str, str]] = field(default_factory=list, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.reverse:
            rev: dict[str, str] = {}
            for term, iri in self.terms.items():
                # First definition wins, except that shorter terms are nicer to read.
                if iri not in rev or len(term) < len(rev[iri]):
                    rev[iri] = term
            self.reverse.update(rev)
        if not self._prefixes:
            # JSON-LD 1.1 (4.4, IRI Compaction): a term whose IRI ends with a gen-delim
            # character may serve as the prefix of a compact IRI ``prefix:suffix``.
            found = [
                (iri, term)
                for term, iri in self.terms.items()
                if iri and iri[-1] in _GEN_DELIMS and ":" not in term and not term.startswith("@")
            ]
            found.sort(key=lambda p: (-len(p[0]), len(p[1])))
            self._prefixes.extend(found)

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
        """Compact an IRI to the shortest known term, else vocab-relative, else a compact IRI
        ``prefix:suffix`` when a term of the context names its namespace (JSON-LD 1.1 IRI
        compaction; CIM 009 5.5.7), else as is."""
        term = self.reverse.get(iri)
        if term is not None:
            return term
        if iri.startswith(self.vocab):
            rest = iri[len(self.vocab) :]
            if rest and ":" not in rest and rest not in self.terms:
                return rest
        done = self._compacted.get(iri)
        if done is not None:
            return done
        out = iri
        for base, prefix in self._prefixes:
            if len(iri) > len(base) and iri.startswith(base):
                suffix = iri[len(base) :]
                candidate = f"{prefix}:{suffix}"
                # Not when it reads as another term, or as an absolute IRI (scheme://...).
                if not suffix.startswith("//") and candidate not in self.terms:
                    out = candidate
                    break
        if len(self._compacted) < 100_000:  # bounded: IRIs come from clients
            self._compacted[iri] = out
        return out

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

    Remote documents are fetched once (concurrent requests for one URL wait for the same fetch)
    and kept as Cached entries of :attr:`registry` until deleted (5.13.5); ``directory`` is the
    ``--context-dir`` whose ``*.jsonld`` files are resolved locally (see :func:`load_directory`).
    """

    def __init__(
        self,
        *,
        allow_remote: bool = True,
        timeout: float = FETCH_TIMEOUT,
        max_bytes: int = MAX_CONTEXT_BYTES,
        directory: Path | None = None,
        allow_list: EndpointAllowList | None = None,
    ) -> None:
        self._allow_remote = allow_remote
        # --allow-endpoint: remote @context URLs outside it are never fetched (allowlist.py)
        self._allow_list = allow_list or EndpointAllowList()
        self._timeout = timeout
        self._max_bytes = max_bytes
        self._documents: dict[str, Any] = {}  # shipped and --context-dir documents by URL
        self._resolved: dict[bytes, Context] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.registry = ContextRegistry()
        self.directory: dict[str, bytes] = {}  # file name -> bytes, served at /ngsi-ld/contexts/
        self._directory_urls: dict[str, str] = {}  # URL a directory file stands for -> name
        if directory is not None:
            self.directory, self._directory_urls = load_directory(directory)
        self.core = self._build([])
        self.registry.note_cached(CORE_CONTEXT_URL, {"@context": _core_object()}, extra=_SHIPPED)

    @property
    def allow_list(self) -> EndpointAllowList:
        """The platform's --allow-endpoint list (also what notifications may reach)."""
        return self._allow_list

    def forget(self, url: str | None = None) -> None:
        """Drop what was resolved through a deleted or reloaded @context (5.13.5)."""
        if url is not None:
            self._documents.pop(url, None)
        self._resolved.clear()

    async def resolve(self, source: Any) -> Context:
        """Resolve a context value: None, a URL, an object, or a list of those."""
        if source is None or source == [] or source in _CORE_ALIASES:
            return self.core
        key = orjson.dumps(source, option=orjson.OPT_SORT_KEYS)
        ctx = self._resolved.get(key)
        if ctx is None:
            objects: list[dict[str, Any]] = []
            await self._flatten(source, objects, depth=0)
            ctx = self._build(objects, source=source)
            if len(self._resolved) < 1024:
                self._resolved[key] = ctx
        if len(self.registry) > 1:  # numberOfHits/lastUsage of stored @contexts (5.2.39)
            for item in source if isinstance(source, list) else (source,):
                if isinstance(item, str):
                    self.registry.hit(item)
        return ctx

    def _build(self, objects: list[dict[str, Any]], source: Any = None) -> Context:
        # CIM 009 4.4 and 5.5.7: the core @context is protected and has absolute precedence,
        # whatever its position in the array: it is processed as if it were the last one, so a
        # user term that names a core term is overridden by the core definition.  A user
        # @context's own @vocab stays (the core's is the fallback, 4.4), and its protected
        # terms keep their IRIs against later user contexts (JSON-LD 1.1 4.1.11).
        core_terms, core_vocab, _ = _core_definitions()
        terms = dict(core_terms)  # core prefixes (ngsi-ld:, geojson:) expand user compact IRIs
        vocab = [core_vocab]
        locked: dict[str, str] = {}
        for obj in objects:
            _check_not_scoped(obj)
            _parse_definitions(obj, terms, vocab)
            for term, iri in locked.items():
                if terms.get(term) != iri:
                    raise BadRequestData(
                        f"@context redefines the protected term {term!r} (JSON-LD 1.1 "
                        "protected term redefinition)"
                    )
            locked.update({t: terms[t] for t in _protected_terms(obj) if t in terms})
        terms.update(core_terms)
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
            if source in _CORE_ALIASES:
                return  # the core @context is implied and applied last by _build (4.4, 5.5.7)
            document = await self._document(source)
            inner = document.get("@context") if isinstance(document, dict) else None
            if inner is None:
                raise LdContextNotAvailable(f"@context {source!r} has no '@context' member")
            await self._flatten(inner, out, depth=depth + 1)
        elif source is not None:
            raise BadRequestData("@context must be a URL, an object or an array of those")

    async def _document(self, url: str) -> Any:
        doc = self._documents.get(url)
        if doc is not None:
            return doc
        local_id = local_id_of(url)
        entry = self.registry.by_local_id(local_id) if local_id else None
        if entry is not None and entry.kind != "Cached":
            return entry.document  # Hosted / ImplicitlyCreated by our @context API (5.13)
        local = _local_name(url)
        name = self._directory_urls.get(url) or _directory_name(url, self.directory)
        if name is not None and url not in _CORE_ALIASES:  # the operator's files come first
            doc = orjson.loads(self.directory[name])
        elif local is not None:
            doc = orjson.loads(shipped_document(local))
        elif not url.startswith(("http://", "https://")):
            raise BadRequestData(f"@context entry {url!r} is not an http(s) URL")
        else:
            return await self._remote(url)
        self._documents[url] = doc
        return doc

    async def _remote(self, url: str) -> Any:
        """A remote @context: the Cached copy, else fetched once and cached (5.13.1)."""
        cached = self.registry.cached(url)
        if cached is not None:
            return cached.document
        if not self._allow_remote:
            raise LdContextNotAvailable(
                f"remote @context {url!r} not available: this platform never fetches @context "
                "URLs (--no-remote-contexts); add it with POST /ngsi-ld/v1/jsonldContexts or "
                "to the --context-dir"
            )
        self._check_allowed(url)
        lock = self._locks.setdefault(url, asyncio.Lock())
        try:
            async with lock:  # concurrent requests for one URL share one fetch
                cached = self.registry.cached(url)
                if cached is None:
                    cached = self.registry.note_cached(url, await self.fetch(url))
                return cached.document
        finally:
            if not lock.locked():
                self._locks.pop(url, None)

    async def reload(self, url: str) -> dict[str, Any]:
        """Fetch a Cached @context again (Delete with reload=true, 5.13.5); the old copy stays
        when the fetch fails."""
        if url == CORE_CONTEXT_URL:
            document: dict[str, Any] = {"@context": _core_object()}
        elif not self._allow_remote:
            raise LdContextNotAvailable(
                f"@context {url!r} cannot be reloaded: this platform never fetches @context URLs"
            )
        else:
            self._check_allowed(url)
            document = await self.fetch(url)
        self.registry.note_cached(url, document)
        self.forget(url)
        return document

    def _check_allowed(self, url: str) -> None:
        if not self._allow_list.permits(url):
            raise LdContextNotAvailable(
                f"remote @context {url!r} not fetched: it is outside this platform's allow-list "
                f"(--allow-endpoint: {', '.join(self._allow_list.prefixes)}); add it with "
                "POST /ngsi-ld/v1/jsonldContexts or to the --context-dir"
            )

    async def fetch(self, url: str) -> dict[str, Any]:
        """GET a remote @context: at most ``max_bytes`` within ``timeout`` seconds in all, on
        the event loop (async httpx), else LdContextNotAvailable (503, 5.5.2)."""
        import httpx  # noqa: PLC0415  # only needed for remote contexts

        log.info("fetching remote @context %s", url)
        body = bytearray()

        async def on_request(request: httpx.Request) -> None:
            # A redirect (followed below) is a new fetch: its target must be allowed too.
            if not self._allow_list.permits(str(request.url)):
                raise _NotAllowed(str(request.url))

        try:
            async with asyncio.timeout(self._timeout):
                async with (
                    httpx.AsyncClient(
                        timeout=self._timeout,
                        follow_redirects=True,
                        max_redirects=5,
                        event_hooks={"request": [on_request]},
                    ) as client,
                    client.stream(
                        "GET", url, headers={"Accept": "application/ld+json, application/json"}
                    ) as answer,
                ):
                    answer.raise_for_status()
                    declared = header_number(answer.headers.get("content-length"))
                    if declared is not None and declared > self._max_bytes:
                        raise _TooLarge
                    async for chunk in answer.aiter_bytes():
                        body += chunk
                        if len(body) > self._max_bytes:
                            raise _TooLarge
            document = orjson.loads(body)
        except _NotAllowed as exc:
            raise LdContextNotAvailable(
                f"@context {url!r} redirects to {exc}, outside this platform's allow-list "
                f"(--allow-endpoint: {', '.join(self._allow_list.prefixes)})"
            ) from None
        except _TooLarge:
            raise LdContextNotAvailable(
                f"@context {url!r} is larger than {self._max_bytes} bytes"
            ) from None
        except TimeoutError:
            raise LdContextNotAvailable(
                f"@context {url!r} not retrieved within {self._timeout:g} s"
            ) from None
        except (httpx.HTTPError, httpx.InvalidURL, orjson.JSONDecodeError) as exc:
            raise LdContextNotAvailable(f"@context {url!r} could not be retrieved: {exc}") from exc
        if not isinstance(document, dict) or "@context" not in document:
            raise LdContextNotAvailable(f"@context {url!r} has no '@context' member")
        return document


class _TooLarge(Exception):
    """A remote @context went over the size limit (internal to ContextResolver.fetch)."""


class _NotAllowed(Exception):
    """A redirect of a remote @context leads outside the allow-list (internal to fetch)."""


_SHIPPED = {"source": "shipped with the platform, never fetched"}


def _directory_name(url: str, directory: dict[str, bytes]) -> str | None:
    """The --context-dir file that ``.../ngsi-ld/contexts/<name>`` (any host) names, if any."""
    if not directory or "/ngsi-ld/contexts/" not in url:
        return None
    name = url.rsplit("/", 1)[-1]
    return name if name in directory else None


def load_directory(path: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """Read a ``--context-dir``: every ``*.jsonld`` file, a JSON object with ``@context``.

    A file ``NAME.jsonld`` is served at ``/ngsi-ld/contexts/NAME.jsonld`` and resolves for any
    URL ending in that path; a file may also stand for remote URLs, named in its top-level
    ``"url"`` member (a string or a list), so that a request naming such a URL is answered
    from the file, never fetched.  A bad file stops the platform with an error naming it.
    """
    from city_platform.errors import PlatformError  # noqa: PLC0415

    files: dict[str, bytes] = {}
    urls: dict[str, str] = {}
    if not path.is_dir():
        raise PlatformError(f"--context-dir {path}: not a directory")
    for file in sorted(path.glob("*.jsonld")):
        data = file.read_bytes()
        if len(data) > MAX_CONTEXT_BYTES:
            raise PlatformError(f"--context-dir: {file} is larger than {MAX_CONTEXT_BYTES} bytes")
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise PlatformError(f"--context-dir: {file} is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or "@context" not in doc:
            raise PlatformError(f"--context-dir: {file} has no top-level '@context' member")
        named = doc.get("url", [])
        for url in [named] if isinstance(named, str) else named:
            if isinstance(url, str):
                urls[url] = file.name
        files[file.name] = data
    log.info("loaded %d @context files from %s", len(files), path)
    return files, urls


@lru_cache(maxsize=1)
def _core_object() -> dict[str, Any]:
    doc = orjson.loads(shipped_document("ngsi-ld-core-context-v1.8.jsonld"))
    core: dict[str, Any] = doc["@context"]
    return core


def _check_not_scoped(obj: dict[str, Any]) -> None:
    """A user @context shall not contain JSON-LD scoped contexts (CIM 009 5.5.7; JSON-LD 1.1
    4.1.8): they could change core terms while expanding.  BadRequestData if it does."""
    for key, value in obj.items():
        if isinstance(value, dict) and "@context" in value:
            raise BadRequestData(
                f"@context: the term {key!r} has a scoped context; a user @context shall not "
                "contain JSON-LD scoped contexts (CIM 009 5.5.7)"
            )


def _protected_terms(obj: dict[str, Any]) -> set[str]:
    """The terms a context object protects: ``"@protected": true`` on the object (all its
    terms, unless a term says ``false``) or on a term definition (JSON-LD 1.1 4.1.11)."""
    every = obj.get("@protected") is True
    out: set[str] = set()
    for key, value in obj.items():
        if key.startswith("@"):
            continue
        flag = value.get("@protected") if isinstance(value, dict) else None
        if flag is True or (every and flag is not False):
            out.add(key)
    return out


@lru_cache(maxsize=1)
def _core_definitions() -> tuple[dict[str, str], str, dict[str, str]]:
    """The core context's terms, its @vocab and its protected terms with their IRIs."""
    terms: dict[str, str] = {}
    vocab = [DEFAULT_VOCAB]
    core = _core_object()
    _parse_definitions(core, terms, vocab)
    locked = {t: terms[t] for t in _protected_terms(core) if t in terms}
    return terms, vocab[0], locked
