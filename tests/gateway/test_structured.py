"""Structured concurrency in the gateway (DESIGN 4): a loop that fails stops the gateway loudly,
and stopping leaves no task behind."""

from __future__ import annotations

import asyncio
import socket
import sys
import time
from pathlib import Path

import aiomqtt
import httpx
import pytest

from gateway.normalizer import Normalized
from gateway.queue import DurableQueue
from gateway.service import Gateway, GatewayConfig
from gateway.transports.mqtt import MqttIngest
from gateway.uplink import Uplink
from testbed.brokers import MosquittoBroker
from tests.conftest import ROOT, free_port

V5 = aiomqtt.ProtocolVersion.V5
TOPIC = "city/noise/noise-1/up/senml-json"
BOOM = b"boom"  # the payload the injected bug fails on

# The real gateway process, with a bug injected into MQTT ingest from outside: delivering the
# BOOM payload raises (outside the per-message guard around the handler).
BUGGY_GATEWAY = f"""
import sys
from gateway.transports.mqtt import MqttIngest
deliver = MqttIngest.deliver
def buggy(self, topic, payload, content_type):
    if payload == {BOOM!r}:
        raise RuntimeError("injected ingest bug")
    return deliver(self, topic, payload, content_type)
MqttIngest.deliver = buggy
from testbed.cli import main
sys.exit(main(sys.argv[1:]))
"""


def config(tmp_path: Path, broker: MosquittoBroker, **changes: object) -> GatewayConfig:
    cfg = GatewayConfig(
        platform_url=f"http://[::1]:{free_port()}",  # nobody there: readings stay queued
        queue_path=tmp_path / "q.db",
        broker_url=broker.url,
        client_id=f"gw-{time.monotonic_ns()}",
        coap_port=free_port("udp"),
        rd_url=None,
        http_port=0,
        southbound=False,
    )
    for name, value in changes.items():
        setattr(cfg, name, value)
    return cfg


def buggy_deliver(monkeypatch: pytest.MonkeyPatch) -> None:
    original = MqttIngest.deliver

    def deliver(self: MqttIngest, topic: str, payload: bytes, content_type: str | None) -> int:
        if payload == BOOM:
            raise RuntimeError("injected ingest bug")
        return original(self, topic, payload, content_type)

    monkeypatch.setattr(MqttIngest, "deliver", deliver)


def leftover_tasks() -> set[asyncio.Task[object]]:
    return asyncio.all_tasks() - {asyncio.current_task()}  # type: ignore[operator]


async def test_a_bug_in_mqtt_ingest_fails_the_gateway(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unexpected exception in MQTT ingest is raised from the gateway, not left behind."""
    buggy_deliver(monkeypatch)

    async def publish_boom(broker: MosquittoBroker) -> None:
        async with asyncio.timeout(20), Gateway(config(tmp_path, broker)) as gw:
            assert gw.mqtt is not None
            await asyncio.wait_for(gw.mqtt.connected.wait(), 10)
            async with aiomqtt.Client("::1", broker.port, protocol=V5) as dev:
                await dev.publish(TOPIC, BOOM, qos=1)
            await asyncio.sleep(30)  # the gateway's failure ends this

    async with MosquittoBroker(port=free_port(), persistence=False) as broker:
        with pytest.raises(ExceptionGroup) as failed:
            await publish_boom(broker)
    assert failed.group_contains(RuntimeError, match="injected ingest bug")
    assert not leftover_tasks()


async def test_the_gateway_process_exits_1_with_the_traceback_on_an_ingest_bug(
    tmp_path: Path,
) -> None:
    """`testbed gateway` stops with status 1 and logs the bug's traceback once."""
    http_port = free_port()
    async with MosquittoBroker(port=free_port(), persistence=False) as broker:
        args = ["gateway", "--broker", broker.url, "--platform", f"http://[::1]:{free_port()}",
                "--rd", "off", "--no-southbound", "--coap-port", str(free_port("udp")),
                "--http-port", str(http_port), "--queue", str(tmp_path / "q.db"),
                "--client-id", f"gw-{time.monotonic_ns()}", "--loop", "asyncio"]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", BUGGY_GATEWAY, *args,
            cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            async with httpx.AsyncClient() as client, asyncio.timeout(20):
                while True:
                    try:
                        health = await client.get(f"http://[::1]:{http_port}/health")
                        if health.json()["mqtt"]:
                            break
                    except httpx.HTTPError:
                        pass
                    await asyncio.sleep(0.1)
            async with aiomqtt.Client("::1", broker.port, protocol=V5) as dev:
                await dev.publish(TOPIC, BOOM, qos=1)
            status = await asyncio.wait_for(proc.wait(), 20)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.stderr is not None
        log = (await proc.stderr.read()).decode()
    assert status == 1, log
    assert log.count("gateway: stopped by an unexpected error") == 1, log
    assert "Traceback" in log
    assert "RuntimeError: injected ingest bug" in log


async def test_stopping_the_gateway_leaves_no_task(tmp_path: Path) -> None:
    """Every part's loops (MQTT, CoAP ingest and observer, HTTP, southbound, uplink) end."""
    async with MosquittoBroker(port=free_port(), persistence=False) as broker:
        cfg = config(tmp_path, broker, rd_url=f"coap://[::1]:{free_port('udp')}", southbound=True)
        async with Gateway(cfg) as gw:
            assert gw.mqtt is not None
            await asyncio.wait_for(gw.mqtt.connected.wait(), 10)
            names = {task.get_name() for task in leftover_tasks()}
            assert {"mqtt ingest", "coap observe", "coap dedup", "gateway http", "southbound",
                    "uplink flusher", "uplink sender 0"} <= names  # fmt: skip
        assert not leftover_tasks()


def reading(device: str) -> Normalized:
    entity = {"id": f"urn:ngsi-ld:NoiseLevelObserved:{device}", "type": "NoiseLevelObserved"}
    return Normalized(device, "noise", 1, [entity], time.time())


async def test_stopping_the_uplink_leaves_no_task_and_keeps_what_it_accepted(
    tmp_path: Path,
) -> None:
    """Leaving the uplink ends its flusher and senders and commits what was submitted."""
    dead = f"http://[::1]:{free_port()}"
    async with Uplink(platform_url=dead, queue_path=tmp_path / "q.db", flush_interval=60) as up:
        up.submit(reading("noise-1"))  # not committed yet: the flusher waits a minute
    assert not leftover_tasks()
    queue = DurableQueue(tmp_path / "q.db", lanes=2)
    try:
        assert len(queue) == 1
    finally:
        queue.close()


async def test_a_bug_in_an_uplink_sender_fails_the_uplink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sender that raises stops the uplink with that exception instead of ending its lane."""

    async def post(self: Uplink, items: object) -> tuple[int | None, str]:
        raise RuntimeError("injected sender bug")

    monkeypatch.setattr(Uplink, "_post", post)

    async def send_one() -> None:
        dead = f"http://[::1]:{free_port()}"
        async with asyncio.timeout(10), Uplink(platform_url=dead, queue_path=tmp_path / "q") as up:
            up.submit(reading("noise-1"))
            await asyncio.sleep(30)  # the uplink's failure ends this

    with pytest.raises(ExceptionGroup) as failed:
        await send_one()
    assert failed.group_contains(RuntimeError, match="injected sender bug")
    assert not leftover_tasks()


async def test_a_gateway_that_fails_to_start_leaves_no_task(tmp_path: Path) -> None:
    """A part that cannot start (CoAP port taken) stops the parts started before it."""
    async with MosquittoBroker(port=free_port(), persistence=False) as broker:
        cfg = config(tmp_path, broker)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as taken:
            taken.bind(("::1", cfg.coap_port))
            with pytest.raises(OSError, match="in use"):
                async with Gateway(cfg):
                    pass
        assert not leftover_tasks()
