"""The gateway's MQTT ingest connection: its packet codec, and its behaviour with real brokers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

import aiomqtt
import cbor2
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from benchmarks import loadgen
from gateway.errors import BrokerError, RejectedPayload
from gateway.normalizer import Inbound
from gateway.transports import mqtt_wire as wire
from gateway.transports.mqtt import MqttIngest, inbound_from
from testbed.brokers import AmqttBroker, MosquittoBroker
from tests.conftest import free_port

V5 = aiomqtt.ProtocolVersion.V5


@pytest.mark.parametrize("times", [1, 2])
def test_topics_name_the_device_and_format_every_time(times: int) -> None:
    """city/<kind>/<device>/up/<format>; a content type (MQTT 5) wins over the format level;
    other topics are not readings.  The second round is answered from the remembered topics."""
    for _ in range(times):
        got = inbound_from("city/noise/noise-1/up/senml-cbor", b"x", None, 1.0)
        assert got is not None
        assert (got.device_id, got.format, got.payload) == ("noise-1", "senml-cbor", b"x")
        typed = inbound_from("city/noise/noise-1/up/senml-cbor", b"x", "text/csv", 1.0)
        assert typed is not None
        assert typed.format == "vendor-csv"
        odd = inbound_from("city/noise/noise-1/up/protobuf", b"x", None, 1.0)
        assert odd is not None
        assert odd.format == "protobuf"
        assert inbound_from("city/noise/noise-1/down/senml-cbor", b"x", None, 1.0) is None
        assert inbound_from("other/topic", b"x", None, 1.0) is None


def test_variable_byte_integers_match_the_spec_table() -> None:
    """MQTT 5 1.5.5: the boundaries of one to four bytes."""
    table = {
        0: b"\x00", 127: b"\x7f", 128: b"\x80\x01", 16383: b"\xff\x7f",
        16384: b"\x80\x80\x01", 2097151: b"\xff\xff\x7f", 2097152: b"\x80\x80\x80\x01",
        268435455: b"\xff\xff\xff\x7f",
    }  # fmt: skip
    for value, encoded in table.items():
        assert wire.varint(value) == encoded
        assert wire.read_varint(b"x" + encoded + b"y", 1) == (value, 1 + len(encoded))
    with pytest.raises(wire.MalformedPacket):
        wire.read_varint(b"\xff\xff\xff\xff\x01", 0)


def test_properties_packed_by_paho_are_read() -> None:
    """Content Type among other properties (paho packs them: an independent implementation)."""
    props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    props.MessageExpiryInterval = 60
    props.UserProperty = [("site", "lab-1")]
    props.ContentType = "application/senml+cbor"
    props.CorrelationData = b"\x01\x02"
    packed = b"prefix" + props.pack() + b"payload"  # type: ignore[no-untyped-call]
    found, end = wire.properties(packed, 6)
    assert found[wire.CONTENT_TYPE] == "application/senml+cbor"
    assert found[0x02] == 60
    assert found[0x09] == b"\x01\x02"
    assert packed[end:] == b"payload"


def test_an_unknown_property_is_a_malformed_packet() -> None:
    with pytest.raises(wire.MalformedPacket):
        wire.properties(b"\x02\x7e\x00", 0)


class Recorder:
    """The handler side: records what MQTT delivers; optionally fails some commits."""

    def __init__(self, fail_commits: int = 0) -> None:
        self.seen: list[Inbound] = []
        self.committed = 0
        self.fail_commits = fail_commits

    def handle(self, inbound: Inbound) -> RejectedPayload | None:
        self.seen.append(inbound)
        if inbound.payload == b"bad":
            return RejectedPayload("malformed", "not SenML")
        if inbound.payload == b"bug":
            raise ZeroDivisionError("a bug in the handler")
        return None

    def commit(self) -> None:
        if self.fail_commits:
            self.fail_commits -= 1
            raise OSError("disk full")
        self.committed += 1


@contextlib.asynccontextmanager
async def ingest(url: str, recorder: Recorder, **kw: str) -> AsyncIterator[MqttIngest]:
    mqtt = MqttIngest(url=url, handler=recorder.handle, commit=recorder.commit, **kw)  # type: ignore[arg-type]
    task = asyncio.create_task(mqtt.run())
    try:
        async with asyncio.timeout(10):
            await mqtt.connected.wait()
        yield mqtt
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], within: float = 10) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110  # conditions on recorded deliveries
            await asyncio.sleep(0.02)


async def test_content_type_and_topic_become_the_inbound() -> None:
    """MQTT 5 Content Type picks the format; the device id comes from the topic."""
    recorder = Recorder()
    async with (
        MosquittoBroker(port=free_port(), persistence=False) as broker,
        ingest(broker.url, recorder),
        aiomqtt.Client("::1", broker.port, protocol=V5) as dev,
    ):
        props = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        props.ContentType = "application/senml+cbor"
        body = cbor2.dumps([{0: "LAeq", 2: 51.0}])
        await dev.publish("city/noise/noise-7/up/x", body, qos=1, properties=props)
        await dev.publish("city/noise/noise-7/up/senml-json", b"[]", qos=0)
        await dev.publish("elsewhere/noise-7", b"ignored", qos=1)
        await until(lambda: len(recorder.seen) == 2)
    first, second = recorder.seen
    assert (first.format, first.device_id, first.payload) == ("senml-cbor", "noise-7", body)
    assert (second.format, second.payload) == ("senml-json", b"[]")
    assert recorder.committed >= 1


async def test_nothing_is_acknowledged_before_it_is_committed() -> None:
    """A failed commit leaves the message unacknowledged; the broker sends it again."""
    recorder = Recorder(fail_commits=1)
    async with (
        MosquittoBroker(port=free_port(), persistence=False) as broker,
        ingest(broker.url, recorder, client_id="gw-commit"),
    ):
        async with aiomqtt.Client("::1", broker.port, protocol=V5) as dev:
            await dev.publish("city/noise/noise-1/up/senml-json", b"[1]", qos=1)
        await until(lambda: recorder.committed == 1)
        await asyncio.sleep(1.0)  # acknowledged now: it must not come a third time
    payloads = [i.payload for i in recorder.seen]
    assert payloads == [b"[1]", b"[1]"]


async def test_bad_messages_and_handler_bugs_do_not_stop_the_rest() -> None:
    """A rejected payload and a handler exception are acknowledged; later readings still flow."""
    recorder = Recorder()
    async with (
        MosquittoBroker(port=free_port(), persistence=False) as broker,
        ingest(broker.url, recorder) as mqtt,
    ):
        async with aiomqtt.Client("::1", broker.port, protocol=V5) as dev:
            for body in (b"bad", b"bug", b"good"):
                await dev.publish("city/noise/noise-1/up/senml-json", body, qos=1)
        await until(lambda: len(recorder.seen) == 3)
        assert mqtt.connected.is_set()
        assert mqtt.deliver("city/noise/noise-1/up/senml-json", b"bad", None) == 0x99
        assert mqtt.deliver("city/noise/noise-1/up/senml-json", b"bug", None) == 0x80
    assert [i.payload for i in recorder.seen[:3]] == [b"bad", b"bug", b"good"]


async def test_readings_wait_in_the_broker_while_the_gateway_is_away() -> None:
    """The persistent session (session expiry, clean start 0) keeps QoS 1 readings for us."""
    recorder = Recorder()
    async with MosquittoBroker(port=free_port(), persistence=False) as broker:
        async with ingest(broker.url, recorder, client_id="gw-away"):
            pass
        async with aiomqtt.Client("::1", broker.port, protocol=V5) as dev:
            for n in range(5):
                await dev.publish("city/noise/noise-1/up/senml-json", f"[{n}]".encode(), qos=1)
        async with ingest(broker.url, recorder, client_id="gw-away"):
            await until(lambda: len(recorder.seen) == 5)
    assert [i.payload for i in recorder.seen] == [f"[{n}]".encode() for n in range(5)]


async def test_a_long_absence_loses_no_reading_in_the_broker() -> None:
    """150,000 readings (a 5,000-device fleet for 30 s) published while the gateway is away all
    wait for it: the broker's queue for a session must not drop what devices sent (the
    testbed's Mosquitto configuration bounded it at 100,000 until 2026-12-01)."""
    count = 150_000
    recorder = Recorder()
    async with MosquittoBroker(port=free_port(), persistence=False) as broker:
        async with ingest(broker.url, recorder, client_id="gw-long"):
            pass
        await loadgen.publish(
            broker.port,
            count,
            lambda n, _now: (f"city/noise/noise-{n % 5000}/up/senml-cbor", b"%d" % n),
        )
        async with ingest(broker.url, recorder, client_id="gw-long"):
            seen = -1
            while len(recorder.seen) != seen:  # until nothing more comes for 2 s
                seen = len(recorder.seen)
                await asyncio.sleep(2.0)
    assert len(recorder.seen) == count
    assert {int(i.payload) for i in recorder.seen} == set(range(count))


async def test_commands_carry_their_content_type() -> None:
    """A southbound command is a QoS 1 PUBLISH with the MQTT 5 Content Type property."""
    recorder = Recorder()
    async with (
        MosquittoBroker(port=free_port(), persistence=False) as broker,
        ingest(broker.url, recorder) as mqtt,
        aiomqtt.Client("::1", broker.port, protocol=V5) as dev,
    ):
        await dev.subscribe("city/streetlight/sl-1/cmd", qos=1)
        await mqtt.publish("city/streetlight/sl-1/cmd", b'{"on":1}', "application/json")
        async with asyncio.timeout(5):
            message = await anext(aiter(dev.messages))
    assert message.payload == b'{"on":1}'
    assert message.properties is not None
    assert message.properties.ContentType == "application/json"  # type: ignore[attr-defined]


async def test_publishing_without_a_connection_is_a_broker_error() -> None:
    mqtt = MqttIngest(url="mqtt://[::1]:1", handler=Recorder().handle)
    with pytest.raises(BrokerError):
        await mqtt.publish("city/x/y/cmd", b"{}")


async def test_a_broker_without_mqtt_5_gets_3_1_1() -> None:
    """amqtt refuses MQTT 5: the ingest falls back to 3.1.1, format from the topic level."""
    recorder = Recorder()
    async with AmqttBroker(port=free_port()) as broker, ingest(broker.url, recorder) as mqtt:
        assert mqtt.protocol == "3.1.1"
        async with aiomqtt.Client("::1", broker.port) as dev:
            await dev.publish("city/noise/noise-2/up/senml-cbor", b"\x80", qos=1)
        await until(lambda: len(recorder.seen) == 1)
    assert (recorder.seen[0].format, recorder.seen[0].device_id) == ("senml-cbor", "noise-2")


async def test_two_gateways_with_their_own_client_ids_share_the_load_once() -> None:
    """MQTT 5 shared subscription (4.8.2): each reading reaches one of the two, exactly once."""
    first, second = Recorder(), Recorder()
    count = 400
    async with (
        MosquittoBroker(port=free_port(), persistence=False) as broker,
        ingest(broker.url, first, client_id="gw-a") as a,
        ingest(broker.url, second, client_id="gw-b") as b,
        aiomqtt.Client("::1", broker.port, protocol=V5) as dev,
    ):
        for n in range(count):
            await dev.publish(f"city/noise/noise-{n % 20}/up/senml-json", f"[{n}]".encode(), qos=1)
        await until(lambda: len(first.seen) + len(second.seen) >= count)
        await asyncio.sleep(0.5)  # time for any duplicate to show
        assert (a.sessions, b.sessions) == (1, 1), "a gateway lost its session"
    payloads = sorted(int(i.payload[1:-1]) for i in first.seen + second.seen)
    assert payloads == list(range(count)), "a reading was lost or delivered twice"
    assert first.seen, "one gateway got nothing"
    assert second.seen, "one gateway got nothing"


async def test_two_gateways_with_one_client_id_are_told_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The broker hands the session to the newest connection (MQTT 5 3.1.4-3); the two keep
    taking it over from each other, and the gateway says what to change."""
    caplog.set_level("WARNING", logger="gateway.transports.mqtt")
    async with (
        MosquittoBroker(port=free_port(), persistence=False) as broker,
        ingest(broker.url, Recorder(), client_id="gw-same"),
        ingest(broker.url, Recorder(), client_id="gw-same"),
    ):
        await until(lambda: "its own client id" in caplog.text, within=20)
    assert "'gw-same'" in caplog.text
