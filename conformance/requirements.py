"""Requirements as data (the Sparkplug TCK style): every testable statement has a stable id.

The registry is ``requirements.toml`` next to this module: the documents the suite traces to,
each with its requirements (id, section, a paraphrase of the normative statement, and for MQTT
the OASIS statement id), and every PICS item with its description. Cases name the ids they
verify (``@case(..., verifies=["RFC7252-4.3"])``); :func:`check_cases` is what makes collection
fail on a duplicate case id, an unknown requirement or an unknown PICS item.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from conformance.model import Case

DATA = Path(__file__).resolve().parent / "requirements.toml"
_KEY = re.compile(r"^[A-Z][A-Z0-9]*$")
_ID = re.compile(r"^[A-Z][A-Z0-9]*(-[A-Za-z0-9.]+)*$")
_STATEMENT = re.compile(r"^MQTT-\d+(\.\d+)*-\d+$")
_PICS = re.compile(r"^[a-z0-9]+\.[a-z0-9-]+$")


class RegistryError(ValueError):
    """The requirement registry (requirements.toml) is inconsistent."""


@dataclass(frozen=True)
class Document:
    key: str  # the prefix of its requirement ids: RFC7252, MQTT5, CIM009 ...
    name: str  # as cited: "RFC 7252", "MQTT 5", "ETSI GS CIM 009"
    title: str

    def __post_init__(self) -> None:
        if not _KEY.match(self.key):
            raise RegistryError(f"document key {self.key!r} is not upper-case letters and digits")
        if not self.name.strip() or not self.title.strip():
            raise RegistryError(f"document {self.key}: name and title must not be empty")


@dataclass(frozen=True)
class Requirement:
    id: str
    document: Document
    section: str  # "" when the document as a whole is cited
    text: str  # the normative statement, paraphrased
    statement: str = ""  # the standard's own statement id, e.g. MQTT-3.3.1-6

    def __post_init__(self) -> None:
        if not _ID.match(self.id):
            raise RegistryError(f"requirement id {self.id!r} is not <KEY>[-<part>...]")
        if self.id != self.document.key and not self.id.startswith(f"{self.document.key}-"):
            raise RegistryError(f"requirement {self.id} does not start with {self.document.key}")
        if not self.text.strip():
            raise RegistryError(f"requirement {self.id} has no text")
        if self.statement:
            if not _STATEMENT.match(self.statement):
                raise RegistryError(f"requirement {self.id}: bad statement id {self.statement!r}")
            # The id is the statement's number under the document key, so both stay in step.
            if self.id != self.document.key + self.statement.removeprefix("MQTT"):
                raise RegistryError(f"requirement {self.id} does not match {self.statement}")

    @property
    def citation(self) -> str:
        """How a report cites it: ``MQTT 3.1.1 3.3.1.3 [MQTT-3.3.1-6]``."""
        text = f"{self.document.name} {self.section}".strip()
        return f"{text} [{self.statement}]" if self.statement else text


@dataclass(frozen=True)
class PicsItem:
    name: str  # <area>.<feature>, e.g. coap.observe
    description: str

    def __post_init__(self) -> None:
        if not _PICS.match(self.name):
            raise RegistryError(f"PICS item {self.name!r} is not <area>.<feature>")
        if not self.description.strip():
            raise RegistryError(f"PICS item {self.name} has no description")


@dataclass(frozen=True)
class Registry:
    documents: tuple[Document, ...]
    requirements: Mapping[str, Requirement]  # in document order
    pics: Mapping[str, PicsItem]

    def __post_init__(self) -> None:
        # Read-only views: the registry is shared by every case and report of a run.
        object.__setattr__(self, "requirements", MappingProxyType(dict(self.requirements)))
        object.__setattr__(self, "pics", MappingProxyType(dict(self.pics)))

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> Registry:
        documents: list[Document] = []
        requirements: dict[str, Requirement] = {}
        pics: dict[str, PicsItem] = {}
        try:
            for entry in data.get("document", []):
                doc = Document(entry["key"], entry["name"], entry["title"])
                if any(d.key == doc.key for d in documents):
                    raise RegistryError(f"document {doc.key} is listed twice")
                documents.append(doc)
                for item in entry.get("requirements", []):
                    req = Requirement(
                        item["id"],
                        doc,
                        item.get("section", ""),
                        item["text"],
                        item.get("statement", ""),
                    )
                    if req.id in requirements:
                        raise RegistryError(f"requirement {req.id} is listed twice")
                    requirements[req.id] = req
            for name, description in data.get("pics", {}).items():
                pics[name] = PicsItem(name, description)
        except (KeyError, TypeError) as exc:
            raise RegistryError(f"malformed registry entry: {exc!r}") from None
        return cls(tuple(documents), requirements, pics)

    def citation(self, requirement_id: str) -> str:
        req = self.requirements.get(requirement_id)
        return req.citation if req else requirement_id


@functools.cache
def registry(path: Path = DATA) -> Registry:
    """The registry shipped with the suite (read once per process)."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RegistryError(f"{path}: {exc}") from None
    return Registry.from_data(data)


def check_cases(declared: Iterable[tuple[str, Case]], known: Registry | None = None) -> list[str]:
    """Problems with the declared cases, each naming the case and the bad name; [] if none.

    ``declared`` pairs each case with where it is declared (a test's node id without its
    parameters): the runs of one parametrized test share a case, two tests may not.
    """
    known = known or registry()
    problems: list[str] = []
    where: dict[str, str] = {}
    seen: set[tuple[str, str]] = set()
    for location, case in declared:
        if (location, case.id) in seen:
            continue
        seen.add((location, case.id))
        if case.id in where:
            problems.append(f"duplicate case id {case.id}: {where[case.id]} and {location}")
            continue
        where[case.id] = location
        problems += [
            f"{case.id} ({location}) verifies unknown requirement {r!r}"
            for r in case.verifies
            if r not in known.requirements
        ]
        problems += [
            f"{case.id} ({location}) needs unknown PICS item {p!r}"
            for p in case.pics
            if p not in known.pics
        ]
    return problems
