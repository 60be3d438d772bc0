"""The gateway's MQTT connection over TLS, against a real Mosquitto TLS listener on [::1]."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiomqtt
import pytest

from gateway.errors import BrokerTlsError, RejectedPayload
from gateway.normalizer import Inbound
from gateway.transports import mqtt_wire as wire
from gateway.transports.mqtt import MqttIngest
from testbed.brokers import BrokerTls, MosquittoBroker, city_accounts, find_mosquitto
from testbed.credentials import CityCredentials
from testbed.pki import new_ca
from tests.conftest import free_port

pytestmark = pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto")
DEVICE = "streetlight-1"


@pytest.fixture
def credentials(tmp_path: Path) -> CityCredentials:
    creds = CityCredentials(tmp_path / "security")
    creds.ensure()
    return creds


@pytest.fixture
async def broker(credentials: CityCredentials, tmp_path: Path) -> AsyncIterator[MosquittoBroker]:
    users = city_accounts(credentials, [DEVICE], observers=0)
    async with MosquittoBroker(
        port=free_port(), users=users, tls=BrokerTls.of(credentials), workdir=tmp_path / "m"
    ) as running:
        yield running


def gateway_ingest(
    broker: MosquittoBroker, credentials: CityCredentials, seen: list[Inbound], ca: Path
) -> MqttIngest:
    def handle(inbound: Inbound) -> RejectedPayload | None:
        seen.append(inbound)
        return None

    return MqttIngest(
        url=broker.url, handler=handle, username="gateway",
        password=credentials.mqtt_password("gateway"), ca_file=ca,
    )  # fmt: skip


@contextlib.asynccontextmanager
async def running(mqtt: MqttIngest) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(mqtt.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def until(condition: Callable[[], bool], within: float = 10) -> None:
    async with asyncio.timeout(within):
        while not condition():  # noqa: ASYNC110  # conditions on recorded deliveries
            await asyncio.sleep(0.02)


def run_on(loop_name: str, main: Callable[[], object]) -> None:
    """Run a coroutine function on the named loop (the gateway runs on uvloop by default)."""
    if loop_name == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    else:
        factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        runner.run(main())  # type: ignore[arg-type]


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_readings_and_commands_go_over_tls(loop_name: str, tmp_path: Path) -> None:
    """300 QoS 1 readings (more than one TURN: paused and resumed reading on the TLS
    transport) reach the gateway, and its command reaches the device, all over TLS."""
    credentials = CityCredentials(tmp_path / "security")
    credentials.ensure()
    users = city_accounts(credentials, [DEVICE], observers=0)

    async def main() -> None:
        seen: list[Inbound] = []
        tls = BrokerTls.of(credentials)
        context = ssl.create_default_context(cafile=str(credentials.ca_file))
        async with MosquittoBroker(
            port=free_port(), users=users, tls=tls, workdir=tmp_path / "m"
        ) as broker:
            mqtt = gateway_ingest(broker, credentials, seen, credentials.ca_file)
            async with (
                running(mqtt),
                aiomqtt.Client(
                    "::1", broker.port, username=DEVICE, password=users[DEVICE],
                    tls_context=context, protocol=aiomqtt.ProtocolVersion.V5,
                ) as dev,
            ):  # fmt: skip
                await until(mqtt.connected.is_set)
                await dev.subscribe(f"city/streetlight/{DEVICE}/cmd", qos=1)
                for i in range(300):
                    await dev.publish(f"city/streetlight/{DEVICE}/up/senml-json", b"%d" % i, qos=1)
                await until(lambda: len(seen) >= 300)
                await mqtt.publish(f"city/streetlight/{DEVICE}/cmd", b'{"on": true}')
                async with asyncio.timeout(5):
                    command = await anext(aiter(dev.messages))
        assert mqtt.ssl is not None
        assert sorted(int(i.payload) for i in seen[:300]) == list(range(300))
        assert command.payload == b'{"on": true}'

    run_on(loop_name, main)


async def test_a_broker_signed_by_another_ca_is_refused_in_words(
    broker: MosquittoBroker, credentials: CityCredentials, tmp_path: Path
) -> None:
    """The handshake failure becomes a BrokerTlsError that says what to check."""
    other = tmp_path / "other-ca.pem"
    other.write_bytes(new_ca("another CA").cert_pem)
    mqtt = gateway_ingest(broker, credentials, [], other)
    with pytest.raises(BrokerTlsError, match=r"certificate verify failed: .*wrong CA\? "):
        await mqtt._session(wire.V5)


async def test_a_tls_failure_is_logged_once_and_never_falls_back_to_mqtt_3(
    broker: MosquittoBroker,
    credentials: CityCredentials,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Retrying against the wrong broker logs one warning, not one per attempt, and a TLS
    failure is not taken for a broker that refuses MQTT 5."""
    # Quick retries: the back-off is scaled by random.uniform (restored after the test).
    monkeypatch.setattr("gateway.transports.mqtt.random.uniform", lambda _a, _b: 0.01)
    other = tmp_path / "other-ca.pem"
    other.write_bytes(new_ca("another CA").cert_pem)
    mqtt = gateway_ingest(broker, credentials, [], other)
    attempts = 0
    session = mqtt._session

    async def counted(version: int) -> None:
        nonlocal attempts
        attempts += 1
        await session(version)

    monkeypatch.setattr(mqtt, "_session", counted)
    with caplog.at_level(logging.INFO, logger="gateway.transports.mqtt"):
        async with running(mqtt):
            await until(lambda: attempts >= 4)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "wrong CA?" in warnings[0].getMessage()
    assert mqtt.protocol == "5"
    assert not mqtt.connected.is_set()


def test_a_ca_file_with_a_plain_url_is_refused(credentials: CityCredentials) -> None:
    """--broker-ca with mqtt:// would look secure and not be."""
    with pytest.raises(ValueError, match="mqtts://"):
        MqttIngest(url="mqtt://[::1]:1883", handler=lambda _i: None, ca_file=credentials.ca_file)
