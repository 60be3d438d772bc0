"""Gateway hardening: times out of range, device ids out of bounds, bounded metric series."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiocoap
import cbor2
import httpx
import orjson
import pytest

from gateway.errors import RejectedPayload
from gateway.metrics import DeviceLabels, Metrics
from gateway.normalizer import Format, Inbound, normalize
from gateway.profiles import Profiles
from gateway.service import Gateway, GatewayConfig
from tests.conftest import free_port

PROFILES = Profiles()
NOW = 1_795_579_200.0
BN = "urn:dev:r197:noise-1:"
YEAR_10000 = 253_402_300_800


def senml_json(**record: object) -> bytes:
    return orjson.dumps([{"bn": BN, "n": "LAeq", "u": "dB", "v": 50, **record}])


def rejected(payload: bytes, fmt: Format, device: str | None = "noise-1") -> RejectedPayload:
    with pytest.raises(RejectedPayload) as caught:
        normalize(Inbound("coap", payload, fmt, NOW, device), PROFILES)
    return caught.value


@pytest.mark.parametrize("bt", [1e300, -1e20, 1e18, YEAR_10000, 2**63, -(2**63), -2e9])
def test_a_base_time_out_of_range_is_a_rejected_reading(bt: float) -> None:
    """RFC 8428 4.5.3: bt beyond what a date can be (overflowed datetime with a traceback)
    is invalid-value, CoAP 4.00 and MQTT 0x99, in JSON and in CBOR alike."""
    as_json = rejected(senml_json(bt=bt), "senml-json")
    cbor = cbor2.dumps([{-2: BN, -3: bt, 0: "LAeq", 1: "dB", 2: 50}])
    as_cbor = rejected(cbor, "senml-cbor")
    for exc in (as_json, as_cbor):
        assert exc.reason == "invalid-value", exc
        assert (exc.coap_code, exc.mqtt_reason_code) == ((4, 0), 0x99)
        assert "1970-01-01 to 9999-12-31" in exc.detail


@pytest.mark.parametrize("bt", [math.nan, math.inf, -math.inf])
def test_a_base_time_that_is_not_a_number_is_a_rejected_reading(bt: float) -> None:
    """NaN and infinities (CBOR can carry them, JSON cannot) are invalid values."""
    cbor = cbor2.dumps([{-2: BN, -3: bt, 0: "LAeq", 1: "dB", 2: 50}])
    assert rejected(cbor, "senml-cbor").reason == "invalid-value"


def test_a_record_time_that_adds_up_past_year_9999_is_a_rejected_reading() -> None:
    """t is added to bt (RFC 8428 4.6): each fits, their sum does not."""
    pack = [{"bn": BN, "bt": YEAR_10000 - 10}, {"n": "LAeq", "u": "dB", "v": 50, "t": 20}]
    assert rejected(orjson.dumps(pack), "senml-json").reason == "invalid-value"
    ok = [{"bn": BN, "bt": YEAR_10000 - 10}, {"n": "LAeq", "u": "dB", "v": 50, "t": 9.5}]
    got = normalize(Inbound("coap", orjson.dumps(ok), "senml-json", NOW, "noise-1"), PROFILES)
    assert got.entities[0]["LAeq"]["observedAt"] == "9999-12-31T23:59:59.500Z"


@pytest.mark.parametrize(
    ("payload", "fmt"),
    [
        (b"noise-1,1e300,LAeq=50", "vendor-csv"),
        (b"noise-1,-1e20,LAeq=50", "vendor-csv"),
        (f"noise-1,{YEAR_10000},LAeq=50".encode(), "vendor-csv"),
        (b'{"dev": "noise-1", "time": "9999-12-31T23:30:00-01:00", "spl": 50}', "vendor-json"),
        (b'{"dev": "noise-1", "time": "0001-01-01T00:00:00+01:00", "spl": 50}', "vendor-json"),
    ],
)
def test_vendor_times_out_of_range_are_rejected_readings(payload: bytes, fmt: Format) -> None:
    """The vendor formats' timestamps are bounded the same way (an offset can push a local
    9999-12-31 past the UTC year 9999)."""
    assert rejected(payload, fmt).reason == "invalid-value"


@pytest.mark.parametrize(
    "device", ["", "x" * 81, "noise-1/../x", "noise 1", "-noise", "nöise-1", "noise-1\n"]
)
def test_a_device_id_out_of_bounds_is_refused_before_it_names_anything(device: str) -> None:
    """Ids from a CoAP path, an MQTT topic level or the directory: 1 to 80 characters of
    letters, digits and _ . : -; else invalid-device-id (CoAP 4.00, MQTT 0x90 topic invalid)."""
    exc = rejected(b"noise-1,1795579200,LAeq=50", "vendor-csv", device)
    assert exc.reason == "invalid-device-id"
    assert (exc.coap_code, exc.mqtt_reason_code) == ((4, 0), 0x90)
    assert len(exc.detail) < 120  # the id is cut short in the answer and the log


def test_a_claimed_device_id_out_of_bounds_is_refused_too() -> None:
    """A device id only in the payload (vendor JSON "dev") meets the same bound."""
    payload = orjson.dumps({"dev": "noise-" + "1" * 100, "time": "2026-01-01T00:00:00Z"})
    assert rejected(payload, "vendor-json", None).reason == "invalid-device-id"


def test_a_well_formed_id_of_no_kind_is_still_unknown() -> None:
    """Within bounds but of no profile: unknown-device (4.04), as before."""
    assert rejected(b"lamp-2,1795579200,x=1", "vendor-csv", "lamp-2").reason == "unknown-device"


def test_device_labels_are_bounded_and_only_for_known_devices() -> None:
    """The first ``limit`` known devices keep their ids; unknown ones and the rest are
    "other", counted in r197_gateway_device_labels_folded_total."""
    metrics = Metrics()
    labels = DeviceLabels(metrics, limit=3)
    assert labels.label("noise-9", known=False) == "other"
    assert [labels.label(f"noise-{n}", known=True) for n in range(5)] == [
        "noise-0", "noise-1", "noise-2", "other", "other",
    ]  # fmt: skip
    assert labels.label("noise-1", known=True) == "noise-1"
    assert labels.label(None, known=False) == "other"
    assert len(labels) == 3
    assert metrics.value("r197_gateway_device_labels_folded_total") == 4


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    """A gateway with CoAP ingest and /metrics; no broker, no directory, no platform."""
    config = GatewayConfig(
        platform_url="http://[::1]:9",  # nothing listens: readings stay queued
        queue_path=tmp_path / "q.db",
        broker_url=None,
        coap_port=free_port("udp"),
        rd_url=None,
        http_port=0,
        southbound=False,
    )
    async with Gateway(config) as gw:
        yield gw


def rejections(gw: Gateway, reason: str) -> float:
    """r197_gateway_rejected_total for one reason, over every device label."""
    series = gw.metrics.counters["r197_gateway_rejected_total"]
    return sum(v for key, v in series.items() if ("reason", reason) in key)


async def _metrics(gw: Gateway) -> str:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"http://[::1]:{gw.http_port}/metrics")).text


async def test_invented_device_ids_do_not_grow_the_metrics(gateway: Gateway) -> None:
    """1000 invented ids (well-formed, unknown kind, malformed and oversized ones) add a few
    series, not one per id; every rejection is still counted."""
    before = len(await _metrics(gateway))
    for n in range(1000):
        device = (f"noise-{n}", f"ghost-{n}", "x" * (100 + n), f"noise-{n}:a")[n % 4]
        gateway.ingest(Inbound("coap", b"[{garbage", "senml-json", time.time(), device))
    text = await _metrics(gateway)
    assert len(text) - before < 1500, text
    assert gateway.metrics.value("r197_gateway_rejected_total") == 1000
    assert 'device="noise-' not in text
    assert "r197_gateway_device_labels_folded_total 1000" in text


async def test_known_devices_get_labels_up_to_the_bound(gateway: Gateway) -> None:
    """Devices with an accepted reading keep their id as label, the first 200 of them; the
    rest fold into "other", so /metrics stays under a bound however many there are."""
    now = time.time()
    for n in range(300):
        good = f"noise-{n},{int(now)},LAeq=50".encode()
        gateway.ingest(Inbound("coap", good, "vendor-csv", now, f"noise-{n}"))
        gateway.ingest(Inbound("coap", b"[{garbage", "senml-json", now, f"noise-{n}"))
    text = await _metrics(gateway)
    labelled = [line for line in text.splitlines() if line.startswith("r197_gateway_rejected")]
    assert len(labelled) == 201  # 200 devices and "other"
    assert 'r197_gateway_rejected_total{device="noise-0",reason="malformed"} 1' in text
    assert 'r197_gateway_rejected_total{device="other",reason="malformed"} 100' in text
    assert len(text) < 30_000
    assert gateway.metrics.value("r197_gateway_rejected_total") == 300


async def test_coap_ingest_answers_4_00_for_bad_times_and_ids(gateway: Gateway) -> None:
    """Through the real CoAP ingest: a base time of 1e300 and a 200-character device id are
    4.00 with the reason in the payload; the gateway goes on taking good readings (2.04)."""
    uri = f"coap://[::1]:{gateway.config.coap_port}/up"
    ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:

        async def post(dev: str, payload: bytes, fmt: int) -> aiocoap.Message:
            msg = aiocoap.Message(code=aiocoap.POST, uri=f"{uri}/{dev}", payload=payload)
            msg.opt.content_format = fmt
            return await ctx.request(msg).response

        far = await post("noise-1", senml_json(bt=1e300), 110)
        assert far.code == aiocoap.BAD_REQUEST
        assert b"9999-12-31" in far.payload
        nan = cbor2.dumps([{-2: BN, -3: math.nan, 0: "LAeq", 1: "dB", 2: 50}])
        assert (await post("noise-1", nan, 112)).code == aiocoap.BAD_REQUEST
        long_id = await post("noise-" + "9" * 200, b"noise-1,1795579200,LAeq=50", 0)
        assert long_id.code == aiocoap.BAD_REQUEST
        assert b"1 to 80" in long_id.payload
        good = await post("noise-1", f"noise-1,{int(time.time())},LAeq=50".encode(), 0)
        assert good.code == aiocoap.CHANGED
    finally:
        await ctx.shutdown()
    assert rejections(gateway, "invalid-value") == 2
    assert rejections(gateway, "invalid-device-id") == 1
    assert gateway.metrics.value("r197_gateway_normalized_total") == 1


def test_a_senml_name_over_255_characters_is_malformed_and_not_remembered() -> None:
    """Invented long names would fill the name cache (65536 of up to 64 KB); they are
    malformed instead, on the one-record fast path and the general path alike."""
    from gateway import senml  # noqa: PLC0415

    before = senml.valid_name.cache_info().currsize
    for n in range(20):
        long = "m" * (300 + n)
        one = orjson.dumps([{"bn": BN, "bt": NOW, "n": long, "u": "dB", "v": 50}])
        assert rejected(one, "senml-json").reason == "malformed"
        two = orjson.dumps([{"bn": BN, "bt": NOW}, {"n": long, "u": "dB", "v": 50}])
        assert rejected(two, "senml-json").reason == "malformed"
    assert senml.valid_name.cache_info().currsize == before


def test_long_mqtt_topics_are_parsed_but_not_remembered() -> None:
    """The topic cache keeps only topics up to 256 characters; longer ones still parse, and
    their device level then meets the device id bound in the normalizer."""
    from gateway.transports import mqtt  # noqa: PLC0415

    before = mqtt._topic_parts.cache_info().currsize
    for n in range(20):
        topic = f"city/noise/noise-{'1' * (300 + n)}/up/vendor-csv"
        inbound = mqtt.inbound_from(topic, b"x", None, NOW)
        assert inbound is not None
        with pytest.raises(RejectedPayload) as caught:
            normalize(inbound, PROFILES)
        assert caught.value.reason == "invalid-device-id"
    assert mqtt._topic_parts.cache_info().currsize == before
