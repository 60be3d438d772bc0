"""The Node-RED peer does the job our gateway does: the same readings leave the same entities
(types, attributes, relationships) and the same history in the platform."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from benchmarks import gateway as gw
from benchmarks.peers import nodered

READINGS, DEVICES = 60, 6
ATTRS = ("deviceCategory", "supportedProtocol", "controlledProperty", "LAeq", "refDevice")


def stored(platform_port: int) -> dict[str, dict[str, Any]]:
    """Every entity in the platform, by id, with its attributes' types and values."""
    api = f"http://[::1]:{platform_port}/ngsi-ld/v1"
    out: dict[str, dict[str, Any]] = {}
    for entity_type in ("Device", "NoiseLevelObserved"):
        found = httpx.get(f"{api}/entities", params={"type": entity_type, "limit": "1000"})
        assert found.status_code == 200, found.text
        for entity in found.json():
            out[entity["id"]] = {
                "type": entity["type"],
                **{a: (entity[a]["type"], entity[a].get("value", entity[a].get("object")))
                   for a in ATTRS if a in entity},
                "history": history(api, entity["id"]) if entity_type != "Device" else None,
            }  # fmt: skip
    return out


def history(api: str, entity_id: str) -> int:
    r = httpx.get(f"{api}/temporal/entities/{entity_id}", params={"attrs": "LAeq", "lastN": "1000"})
    assert r.status_code == 200, r.text
    return len(r.json()["LAeq"])


def without_values(entities: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The readings' values and times differ between two runs; their shape must not."""
    return {i: {k: (v[0] if k == "LAeq" else v) for k, v in e.items()} for i, e in entities.items()}


@pytest.mark.slow
def test_node_red_peer_writes_what_our_gateway_writes(tmp_path: Path) -> None:
    try:
        nodered.install()
    except nodered.PeerUnavailable as exc:
        pytest.fail(f"the Node-RED peer cannot be installed: {exc}")
    with gw.Stack(tmp_path / "ours") as stack:
        gw.run_publisher(stack.broker.port, "senml-json", READINGS, DEVICES, None)
        stack.wait_forwarded(READINGS, within=60)
        ours = stored(stack.platform_port)
    with gw.Stack(tmp_path / "peer", with_gateway=False) as stack:
        port = gw.free_port()
        with nodered.NodeRed(
            tmp_path / "nodered", port, stack.broker.port, stack.platform_port
        ) as red:
            gw.run_publisher(stack.broker.port, "senml-json", READINGS, DEVICES, None)
            for _ in range(600):
                if red.stats()["confirmed"] >= READINGS:
                    break
                time.sleep(0.05)
            assert red.stats()["confirmed"] == READINGS
        peer = stored(stack.platform_port)
    assert len(ours) == 2 * DEVICES
    assert without_values(peer) == without_values(ours)
    device = ours["urn:ngsi-ld:Device:noise-b1"]
    assert device["controlledProperty"] == ("Property", ["LAeq"])
    reading = ours["urn:ngsi-ld:NoiseLevelObserved:noise-b1"]
    assert reading["refDevice"] == ("Relationship", "urn:ngsi-ld:Device:noise-b1")
    assert reading["history"] == READINGS // DEVICES
