"""R197-NGSILD-37..44: context information provision - Merge Entity, the NGSI-LD Null in
merge, update and partial update, Replace Attribute, Batch Entity Merge, Purge Entities and
empty path segments (ETSI GS CIM 009 V1.8.1 clause 5.6).

Every case makes its own uniquely named types and ids, so a shared IUT tenant does not
disturb it.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from conformance.model import case
from conformance.ngsild_common import ERR, problem, unique

NULL = "urn:ngsi-ld:null"


def _body(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        raise AssertionError(f"answer is not JSON: {r.status_code} {r.text[:200]!r}") from None


def _building(kind: str, n: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"urn:ngsi-ld:{kind}:{n}",
        "type": kind,
        "name": {"type": "Property", "value": f"B{n}"},
        "airQualityLevel": {"type": "Property", "value": 4, "unitCode": "C62",
                            "observedAt": "2020-09-09T16:40:00.000Z"},
        "owner": {"type": "Relationship", "object": "urn:ngsi-ld:Person:p1"},
        **extra,
    }  # fmt: skip


def _create(api: httpx.Client, doc: dict[str, Any]) -> str:
    r = api.post("/entities", json=doc)
    assert r.status_code == 201, f"create: expected 201, got {r.status_code}: {r.text[:200]!r}"
    return str(doc["id"])


def _get(api: httpx.Client, eid: str, **params: str) -> dict[str, Any]:
    r = api.get(f"/entities/{eid}", params=params)
    assert r.status_code == 200, f"retrieve: expected 200, got {r.status_code}: {r.text[:200]!r}"
    body = _body(r)
    assert isinstance(body, dict), f"retrieve: not an entity: {r.text[:200]!r}"
    return body


def _attr(entity: dict[str, Any], name: str) -> dict[str, Any]:
    found = entity.get(name)
    assert isinstance(found, dict), f"attribute {name!r} missing or not one instance: {entity}"
    return found


def _no_content(r: httpx.Response, what: str) -> None:
    assert r.status_code == 204, f"{what}: expected 204, got {r.status_code}: {r.text[:200]!r}"


@case("R197-NGSILD-37", "Merge Entity merges a fragment: named members replaced, others kept, "
      "new attributes appended",
      verifies=["CIM009-5.6.17"], theme="interoperability", pics=["ngsild.merge"])  # fmt: skip
def test_merge_entity(api: httpx.Client) -> None:
    eid = _create(api, _building(unique("R197M")))
    frag = {"airQualityLevel": {"type": "Property", "value": 1,
                                "observedAt": "2024-01-01T00:00:00.000Z"},
            "height": {"type": "Property", "value": 330}}  # fmt: skip
    _no_content(api.patch(f"/entities/{eid}", json=frag), "merge")
    got = _get(api, eid)
    aql = got.get("airQualityLevel")
    assert isinstance(aql, dict), f"airQualityLevel missing after merge: {got}"
    assert aql.get("value") == 1, f"merged value not taken: {aql}"
    assert aql.get("observedAt") == "2024-01-01T00:00:00.000Z", f"observedAt not taken: {aql}"
    assert aql.get("unitCode") == "C62", f"unitCode the fragment did not name was lost: {aql}"
    assert got.get("height", {}).get("value") == 330, f"new attribute not appended: {got}"
    assert got.get("name", {}).get("value") == "B1", f"untouched attribute changed: {got}"


@case("R197-NGSILD-38", "In Merge Entity the NGSI-LD Null deletes an attribute, one instance "
      "of a datasetId, or a sub-attribute",
      verifies=["CIM009-5.6.17-null", "CIM009-5.2.1-null"], theme="interoperability",
      pics=["ngsild.merge", "ngsild.null"])  # fmt: skip
def test_merge_null(api: httpx.Client) -> None:
    ds = "urn:ngsi-ld:Dataset:r197"
    eid = _create(api, _building(unique("R197M"), speed=[
        {"type": "Property", "value": 1}, {"type": "Property", "value": 2, "datasetId": ds}]))  # fmt: skip
    frag = {
        "owner": {"type": "Relationship", "object": NULL},
        "speed": {"type": "Property", "value": NULL, "datasetId": ds},
        "airQualityLevel": {"type": "Property", "unitCode": NULL},
    }
    _no_content(api.patch(f"/entities/{eid}", json=frag), "merge with Null")
    got = _get(api, eid)
    assert "owner" not in got, f"a Null Relationship object did not delete it: {got}"
    speed = _attr(got, "speed")
    assert speed.get("value") == 1, f"a Null of {ds} should leave the default instance: {speed}"
    assert "datasetId" not in speed, f"the instance of {ds} is still there: {speed}"
    aql = _attr(got, "airQualityLevel")
    assert "unitCode" not in aql, f"a Null unitCode should delete the unitCode: {aql}"
    assert aql.get("value") == 4, f"a Null unitCode should leave the value: {aql}"


@case("R197-NGSILD-39", "The NGSI-LD Null deletes in Update Entity Attributes and Partial "
      "Attribute Update, and is 400 BadRequestData when creating an entity",
      verifies=["CIM009-5.6.2-null", "CIM009-5.6.4-null", "CIM009-5.2.1-null"],
      theme="interoperability", pics=["ngsild.null"])  # fmt: skip
def test_update_and_partial_update_null(api: httpx.Client) -> None:
    kind = unique("R197N")
    eid = _create(api, _building(kind))
    r = api.patch(f"/entities/{eid}/attrs", json={"name": {"type": "Property", "value": NULL}})
    _no_content(r, "update attributes with Null")
    got = _get(api, eid)
    assert "name" not in got, f"Update Entity Attributes with a Null value kept it: {got}"
    r = api.patch(f"/entities/{eid}/attrs/airQualityLevel", json={"value": 5, "unitCode": NULL})
    _no_content(r, "partial attribute update with a Null unitCode")
    aql = _attr(_get(api, eid), "airQualityLevel")
    assert aql.get("value") == 5, f"partial update: expected value 5, got {aql}"
    assert "unitCode" not in aql, f"partial update: a Null unitCode kept it: {aql}"
    r = api.patch(f"/entities/{eid}/attrs/owner", json={"type": "Relationship", "object": NULL})
    _no_content(r, "partial attribute update with a Null object")
    assert "owner" not in _get(api, eid), "a Null object in a partial update did not delete it"
    bad = _building(kind, 2, name={"type": "Property", "value": NULL})
    problem(api.post("/entities", json=bad), 400, "BadRequestData")


@case("R197-NGSILD-40", "Replace Attribute replaces one attribute as a whole; a missing "
      "entity or attribute is 404, an invalid name 400",
      verifies=["CIM009-5.6.19"], theme="interoperability", pics=["ngsild.replace"])  # fmt: skip
def test_replace_attribute(api: httpx.Client) -> None:
    eid = _create(api, _building(unique("R197R")))
    before = _get(api, eid, options="sysAttrs").get("airQualityLevel", {}).get("createdAt")
    r = api.put(f"/entities/{eid}/attrs/airQualityLevel", json={"type": "Property", "value": 9})
    _no_content(r, "replace attribute")
    aql = _attr(_get(api, eid, options="sysAttrs"), "airQualityLevel")
    assert aql.get("value") == 9, f"not replaced: {aql}"
    assert "unitCode" not in aql, f"replace kept a member of the old attribute: {aql}"
    if before is not None:
        assert aql.get("createdAt") == before, f"createdAt changed: {before} -> {aql}"
    body = {"type": "Property", "value": True}
    problem(api.put(f"/entities/{eid}/attrs/brandName", json=body), 404, "ResourceNotFound")
    problem(api.put(f"/entities/{eid}x/attrs/name", json=body), 404, "ResourceNotFound")
    r = api.put(f"/entities/{eid}/attrs/@invalid", json=body)
    assert r.status_code == 400, f"invalid attribute name: expected 400, got {r.status_code}"


@case("R197-NGSILD-41", "Batch Entity Merge merges each entity; a missing entity is reported "
      "in a 207 BatchOperationResult; batch delete takes application/ld+json",
      verifies=["CIM009-5.6.20", "CIM009-5.6.10-ldjson"], theme="interoperability", pics=["ngsild.merge"])  # fmt: skip
def test_batch_merge(api: httpx.Client) -> None:
    kind = unique("R197B")
    ids = [_create(api, _building(kind, n)) for n in (1, 2)]
    frag = {"type": kind, "airQualityLevel": {"type": "Property", "value": 1}}
    r = api.post("/entityOperations/merge", json=[{"id": i, **frag} for i in ids])
    _no_content(r, "batch merge")
    for eid in ids:
        aql = _attr(_get(api, eid), "airQualityLevel")
        assert aql.get("value") == 1, f"{eid}: merged value not taken: {aql}"
        assert aql.get("unitCode") == "C62", f"{eid}: unitCode not named was lost: {aql}"
    missing = f"urn:ngsi-ld:{kind}:none"
    r = api.post("/entityOperations/merge", json=[{"id": ids[0], **frag}, {"id": missing, **frag}])
    assert r.status_code == 207, f"expected 207, got {r.status_code}: {r.text[:200]!r}"
    body = _body(r)
    assert isinstance(body, dict), f"not a BatchOperationResult: {body!r}"
    assert body.get("success") == [ids[0]], f"success: {body.get('success')!r}"
    errors = body.get("errors") or [{}]
    assert errors[0].get("entityId") == missing, f"errors: {errors!r}"
    # Batch delete takes the array of ids as application/ld+json too (no term to expand).
    r = api.post("/entityOperations/delete", content=json.dumps(ids).encode(),
                 headers={"Content-Type": "application/ld+json"})  # fmt: skip
    _no_content(r, "batch delete in application/ld+json")
    r = api.get(f"/entities/{ids[0]}")
    assert r.status_code == 404, f"{ids[0]} still there after batch delete: {r.status_code}"


@case("R197-NGSILD-42", "Merge Entity errors: an invalid id 400, an unknown entity 404, an "
      "empty id segment 400 BadRequestData; entities/ and attrs/ are the collections",
      verifies=["CIM009-5.6.17.4", "CIM009-6.5-empty-id"], theme="interoperability",
      pics=["ngsild.merge"])  # fmt: skip
def test_merge_errors(api: httpx.Client) -> None:
    kind = unique("R197E")
    frag = {"name": {"type": "Property", "value": "x"}}
    doc = _building(kind)
    eid = doc["id"]  # created so that the tenant exists: the 404 below is about the entity
    # The resource is /entities/ (6.4) and the attributes of one /entities/{entityId}/attrs/
    # (6.6): with the trailing slash both are the collections, not an empty segment.
    r = api.post("/entities/", json=doc)
    assert r.status_code == 201, (
        f"POST /entities/: expected 201, got {r.status_code}: {r.text[:200]!r}"
    )
    r = api.post(f"/entities/{eid}/attrs/", json={"height": {"type": "Property", "value": 3}})
    assert r.status_code == 204, f"POST attrs/: expected 204, got {r.status_code}: {r.text[:200]!r}"
    r = api.patch("/entities/invalidUri", json=frag)
    assert r.status_code == 400, f"invalid id: expected 400, got {r.status_code}: {r.text[:200]!r}"
    problem(api.patch(f"/entities/urn:ngsi-ld:{kind}:none", json=frag), 404, "ResourceNotFound")
    problem(api.patch("/entities/", json=frag), 400, "BadRequestData")
    # no attribute name: Delete Entity Attribute is only on /attrs/{attrId}, 405 (ETSI 013_02_03)
    r = api.delete(f"/entities/{eid}/attrs/")
    assert r.status_code == 405, (
        f"DELETE attrs/: expected 405, got {r.status_code}: {r.text[:200]!r}"
    )


@case("R197-NGSILD-43", "Scope in fragments: append and merge replace the scope, append "
      "with noOverwrite adds to it, a Null scope in merge removes it",
      verifies=["CIM009-4.18-provision"], theme="interoperability",
      pics=["ngsild.scope", "ngsild.null"])  # fmt: skip
def test_scope_in_fragments(api: httpx.Client) -> None:
    eid = _create(api, _building(unique("R197S"), scope="/Paris"))
    _no_content(api.post(f"/entities/{eid}/attrs", json={"scope": "/Tour"}), "append scope")
    got = _get(api, eid).get("scope")
    assert got == "/Tour", f"append should replace the scope: {got!r}"
    r = api.post(f"/entities/{eid}/attrs", params={"options": "noOverwrite"},
                 json={"scope": "/Paris"})  # fmt: skip
    _no_content(r, "append scope with noOverwrite")
    got = _get(api, eid).get("scope")
    assert sorted(got if isinstance(got, list) else [got]) == ["/Paris", "/Tour"], (
        f"append with noOverwrite should add the scope: {got!r}"
    )
    _no_content(api.patch(f"/entities/{eid}", json={"scope": "/Lyon"}), "merge scope")
    assert _get(api, eid).get("scope") == "/Lyon", "merge should replace the scope"
    _no_content(api.patch(f"/entities/{eid}", json={"scope": NULL}), "merge Null scope")
    assert "scope" not in _get(api, eid), "a Null scope should remove the scope"


@case("R197-NGSILD-44", "Purge Entities (DELETE /entities) deletes the entities of a selection "
      "and refuses a request without one",
      verifies=["CIM009-5.6-purge"], theme="interoperability", pics=["ngsild.purge"])  # fmt: skip
def test_purge(api: httpx.Client) -> None:
    kind = unique("R197P")
    ids = [_create(api, _building(kind, n)) for n in (1, 2, 3)]
    r = api.delete("/entities", params={"type": kind, "id": ids[0]})
    _no_content(r, "purge by type and id")
    r = api.get("/entities", params={"type": kind})
    assert r.status_code == 200, f"query: {r.status_code} {r.text[:200]!r}"
    left = sorted(e.get("id") for e in _body(r) if isinstance(e, dict))
    assert left == ids[1:], f"purge by id should delete only {ids[0]}: left {left}"
    _no_content(api.delete("/entities", params={"type": kind}), "purge by type")
    r = api.get("/entities", params={"type": kind})
    assert _body(r) == [], f"purge by type left entities: {r.text[:200]!r}"
    r = api.delete("/entities")
    assert r.status_code == 400, f"purge without selection: expected 400, got {r.status_code}"
    assert _body(r).get("type") == ERR + "BadRequestData", r.text[:200]
