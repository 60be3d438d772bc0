"""R197-NGSILD-84..85: deletions in the temporal API - a deleted Attribute instance is in the
Attribute's temporal evolution with ``deletedAt`` and ``timeproperty=deletedAt`` retrieves it
(ETSI GS CIM 009 V1.8.1 4.8, 5.7.3), whether Delete Attribute (5.6.5) or the NGSI-LD Null of
Merge Entity (5.6.17) deleted it.

Every case makes its own uniquely named type and entity, so a shared IUT tenant does not
disturb it.
"""

from __future__ import annotations

from typing import Any

import httpx

from conformance.model import case
from conformance.ngsild_common import unique

NULL = "urn:ngsi-ld:null"


def _json(r: httpx.Response, status: int = 200) -> Any:
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text[:300]!r}"
    try:
        return r.json()
    except ValueError:
        raise AssertionError(f"the answer is not JSON: {r.content[:200]!r}") from None


def _vehicle(api: httpx.Client) -> str:
    kind = unique("R197Car")
    eid = f"urn:ngsi-ld:{kind}:{unique()}"
    doc = {
        "id": eid,
        "type": kind,
        "speed": {"type": "Property", "value": 50, "observedAt": "2026-01-01T10:00:00Z"},
        "fuel": {"type": "Property", "value": 30, "observedAt": "2026-01-01T10:00:00Z"},
    }
    r = api.post("/entities", json=doc)
    assert r.status_code == 201, f"create entity: {r.status_code} {r.text[:300]!r}"
    return eid


def _deletion(api: httpx.Client, eid: str, attr: str) -> dict[str, Any]:
    """The one instance of ``attr`` that timeproperty=deletedAt retrieves, with its deletedAt."""
    r = api.get(f"/temporal/entities/{eid}", params={"timeproperty": "deletedAt"})
    body = _json(r)
    assert isinstance(body, dict), f"not a temporal entity: {str(body)[:200]!r}"
    instances = body.get(attr)
    if isinstance(instances, dict):
        instances = [instances]
    assert isinstance(instances, list), f"no {attr!r} in the deletedAt history: {body!r}"
    assert len(instances) == 1, f"expected the one deletion of {attr!r}, got {instances!r}"
    (gone,) = instances
    assert isinstance(gone, dict), f"an instance is not an object: {gone!r}"
    assert isinstance(gone.get("deletedAt"), str), f"no deletedAt in the deletion: {gone!r}"
    return gone


@case("R197-NGSILD-84", "Delete Attribute leaves a deletedAt instance that timeproperty=deletedAt retrieves",
      verifies=["CIM009-4.8-deletedAt", "CIM009-5.7.3-deletedAt"], theme="interoperability",
      pics=["ngsild.temporal", "ngsild.temporal-deleted-at"])  # fmt: skip
def test_delete_attribute_is_in_the_history(api: httpx.Client) -> None:
    eid = _vehicle(api)
    r = api.delete(f"/entities/{eid}/attrs/speed")
    assert r.status_code == 204, f"delete attribute: {r.status_code} {r.text[:300]!r}"
    gone = _deletion(api, eid, "speed")
    assert gone.get("type") == "Property", f"the deletion's type: {gone!r}"
    observed = _json(api.get(f"/temporal/entities/{eid}"))
    speed = observed.get("speed") if isinstance(observed, dict) else None
    values = (
        [i.get("value") for i in speed if isinstance(i, dict)] if isinstance(speed, list) else []
    )
    assert 50 in values, f"the observedAt history lost the value before the deletion: {speed!r}"
    assert "fuel" not in _json(
        api.get(f"/temporal/entities/{eid}", params={"timeproperty": "deletedAt"})
    ), "fuel was not deleted but is in the deletedAt history"


@case("R197-NGSILD-85", "An Attribute deleted by the NGSI-LD Null of Merge Entity is in the deletedAt history",
      verifies=["CIM009-4.8-deletedAt", "CIM009-5.6.17-null-history"], theme="interoperability",
      pics=["ngsild.temporal", "ngsild.temporal-deleted-at"])  # fmt: skip
def test_null_deletion_is_in_the_history(api: httpx.Client) -> None:
    eid = _vehicle(api)
    r = api.patch(f"/entities/{eid}", json={"fuel": {"type": "Property", "value": NULL}})
    assert r.status_code == 204, f"merge entity with the NGSI-LD Null: {r.status_code} {r.text!r}"
    current = _json(api.get(f"/entities/{eid}"))
    assert "fuel" not in current, f"the NGSI-LD Null did not delete fuel: {current!r}"
    gone = _deletion(api, eid, "fuel")
    assert gone.get("type") == "Property", f"the deletion's type: {gone!r}"
