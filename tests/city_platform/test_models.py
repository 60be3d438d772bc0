"""city_platform.models: the gateway-platform contract (DESIGN.md section 2)."""

from __future__ import annotations

import subprocess
import sys

from city_platform import errors, models
from city_platform.broker import BatchResult
from city_platform.entities import _PLAIN
from gateway.normalizer import Inbound, normalize
from gateway.profiles import Profiles
from tests.conftest import ROOT

# What the gateway must not load by importing the contract: the platform's web stack, its
# storage and its broker (the gateway runs without them).
HEAVY = ("fastapi", "starlette", "pydantic", "sqlite3", "city_platform.broker")
HEAVY_PREFIXES = ("city_platform.storage", "city_platform.api")


def test_importing_the_contract_loads_no_web_stack_storage_or_broker() -> None:
    """`import city_platform.models` in a fresh interpreter imports none of FastAPI, Starlette,
    pydantic, sqlite3, the broker or the storage and API packages."""
    code = (
        "import sys, city_platform.models\n"
        f"heavy = {HEAVY!r}\n"
        f"prefixes = {HEAVY_PREFIXES!r}\n"
        "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] in heavy"
        " or m.startswith(prefixes)))\n"
    )
    found = subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=ROOT, capture_output=True, text=True
    )
    assert found.stdout.strip() == "[]"


def test_entity_ids_follow_the_urn_ngsi_ld_type_id_form() -> None:
    """entity_id builds urn:ngsi-ld:<Type>:<id>; local_id takes it apart, None if not of it."""
    assert models.entity_id("Streetlight", "lamp-7") == "urn:ngsi-ld:Streetlight:lamp-7"
    assert models.entity_id_prefix("Device") == "urn:ngsi-ld:Device:"
    assert models.local_id("Streetlight", "urn:ngsi-ld:Streetlight:lamp-7") == "lamp-7"
    assert models.local_id("Streetlight", "urn:ngsi-ld:Streetlight:a:b") == "a:b"
    assert models.local_id("Streetlight", "urn:ngsi-ld:StreetlightGroup:x") is None
    assert models.local_id("Streetlight", "urn:ngsi-ld:Streetlight:") is None


def test_property_members_are_those_of_a_plain_reading() -> None:
    """The contract's Property has type, value, observedAt, unitCode: the members the
    platform's fast path takes (NotRequired keys are seen: the module has no lazy annotations)."""
    assert frozenset({"type", "value", "observedAt", "unitCode"}) == models.PROPERTY_MEMBERS
    assert models.Property.__required_keys__ == frozenset({"type", "value"})
    assert _PLAIN is models.PROPERTY_MEMBERS


def test_what_the_gateway_normalizes_has_the_contract_shapes() -> None:
    """A normalized SenML reading with a position: each attribute has exactly the members of
    the contract's Property, GeoProperty or Relationship, with the ids entity_id gives."""
    pack = (
        b'[{"bn":"urn:dev:r197:weather-3:","bt":1700000000,"n":"temperature","u":"Cel",'
        b'"v":21.5},{"n":"lat","v":48.1},{"n":"lon","v":11.5}]'
    )
    out = normalize(Inbound("mqtt", pack, "senml-json", 1.7e9), Profiles())
    doc, device = out.entities
    shapes = {
        "Property": models.PROPERTY_MEMBERS,
        "GeoProperty": models.GeoProperty.__required_keys__ | models.GeoProperty.__optional_keys__,
        "Relationship": models.Relationship.__required_keys__,
    }
    assert doc["id"] == models.entity_id(doc["type"], "weather-3")
    assert device["id"] == models.entity_id("Device", "weather-3")
    assert doc["refDevice"] == {"type": "Relationship", "object": device["id"]}
    for name, attr in doc.items():
        if name not in ("id", "type"):
            assert set(attr) <= shapes[attr["type"]], name
    assert doc["location"]["value"]["type"] == "Point"


def test_platform_errors_render_the_contract_problem_details() -> None:
    """A platform error's body is a ProblemDetails with the NGSI-LD error type URI; a batch
    result's body is a BatchOperationResult holding BatchEntityErrors."""
    error = errors.ResourceNotFound("no such entity")
    assert error.problem() == {
        "type": "https://uri.etsi.org/ngsi-ld/errors/ResourceNotFound",
        "title": "Resource not found",
        "detail": "no such entity",
    }
    assert models.error_type_uri("BadRequestData") == models.ERROR_BASE + "BadRequestData"
    result = BatchResult(success=["urn:ngsi-ld:X:1"])
    result.fail("urn:ngsi-ld:X:2", error)
    body = result.body()
    assert set(body) == set(models.BatchOperationResult.__required_keys__)
    assert set(body["errors"][0]) == set(models.BatchEntityError.__required_keys__)


def test_every_platform_error_type_is_one_the_contract_names() -> None:
    """Each PlatformError subclass renders one of the contract's ErrorType names."""
    names = set(models.ErrorType.__args__)
    classes = [errors.PlatformError, *errors.PlatformError.__subclasses__()]
    assert {c.type_name for c in classes} <= names
    assert len(classes) > 5


def test_contract_all_is_complete_and_sorted() -> None:
    """__all__ names every public name of the module, constants first, then sorted (as ruff's
    RUF022 sorts it)."""
    public = {n for n in vars(models) if not n.startswith("_")} - {
        "Any",
        "Final",
        "Literal",
        "NotRequired",
        "TypedDict",
    }
    assert set(models.__all__) == public
    assert models.__all__ == sorted(models.__all__, key=lambda n: (not n.isupper(), n))
