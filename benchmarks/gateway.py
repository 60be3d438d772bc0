# ruff: noqa: E501  # process command lines and table rows read best on one line
"""End-to-end benchmark of one gateway, with real Mosquitto, gateway and platform on [::1].

Measures:
1. readings per second from MQTT publishers to confirmed platform writes, per payload format
   (a reading here is one message carrying one measurement, noise LAeq);
2. latency from the device's timestamp to the platform's confirmation (the gateway's
   histogram), p50/p95/p99, at fixed offered loads;
3. memory per simulated device (RSS of a process holding a fleet of MQTT devices);
4. bytes on the wire per reading, per protocol and format, counted by a relay between the
   device and the broker/gateway (MQTT and CoAP bytes both ways), plus 40 bytes of IPv6 and
   32 of TCP (with timestamps) per TCP read, or 8 of UDP per datagram.

    python -m benchmarks.gateway --quick     # about a minute
    python -m benchmarks.gateway             # a few minutes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import platform as host
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cbor2
import httpx

from benchmarks import loadgen
from testbed.brokers import BrokerTls, MosquittoBroker
from testbed.credentials import CityCredentials
from testbed.parts import ROOT, GatewayOptions, gateway_spec, platform_spec
from testbed.processes import ManagedProcess, free_port

BUCKET = re.compile(r'r197_gateway_e2e_latency_seconds_bucket\{le="([^"]+)"\} (\d+)')
FORWARDED = re.compile(r"^r197_gateway_forwarded_total (\S+)$", re.M)
LAST_FORWARD = re.compile(r"^r197_gateway_last_forward_timestamp_seconds (\S+)$", re.M)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def monotonic_of(wall: float) -> float:
    """The monotonic time of a wall-clock time (a Unix time another process recorded)."""
    return time.monotonic() - max(0.0, time.time() - wall)


def _plain(device: str) -> bool:
    """True when json.dumps writes ``device`` as it is, between quotes."""
    return device.isascii() and device.isprintable() and '"' not in device and "\\" not in device


def payload(fmt: str, device: str, t: float, value: float) -> bytes:
    """One reading as a device sends it.

    The JSON forms are written out byte for byte as json.dumps writes them (numbers as repr,
    tests/benchmarks/test_loadgen.py compares the two): the load generator makes one per
    message, on the same two cores as what it measures, and json.dumps was two thirds of its
    CPU (2.8 of 4 us per SenML JSON message)."""
    if fmt == "senml-cbor":
        return cbor2.dumps([{-2: f"urn:dev:r197:{device}:", -3: t, 0: "LAeq", 1: "dB", 2: value}])
    finite = math.isfinite(t) and math.isfinite(value)
    if fmt == "senml-json":
        if finite and _plain(device):
            return (
                f'[{{"bn": "urn:dev:r197:{device}:", "bt": {t!r}, "n": "LAeq", "u": "dB", '
                f'"v": {value!r}}}]'
            ).encode()
        return json.dumps(
            [{"bn": f"urn:dev:r197:{device}:", "bt": t, "n": "LAeq", "u": "dB", "v": value}]
        ).encode()
    stamp = datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")
    if finite and _plain(device):
        return f'{{"dev": "{device}", "time": "{stamp}", "laeq_db": {value!r}}}'.encode()
    return json.dumps({"dev": device, "time": stamp, "laeq_db": value}).encode()


def publisher(
    port: int,
    fmt: str,
    count: int,
    devices: int,
    rate: float | None,
    qos: int,
    started: Any = None,
    topic: str = "city/noise/{device}/up/{fmt}",
    tls: tuple[str, str, str] | None = None,
) -> None:
    """Runs in its own process: publish ``count`` readings (at ``rate``/s, or as fast as it can).

    ``started`` (a shared double) receives the monotonic time of the first publish, so that
    process start-up and the MQTT connection are not counted as the gateway's time.
    """

    def message(n: int, now: float) -> tuple[str, bytes]:
        device = f"noise-b{n % devices}"
        return topic.format(device=device, fmt=fmt), payload(fmt, device, now, 40 + n % 50)

    ca_file, username, password = tls or (None, None, None)
    began = asyncio.run(
        loadgen.publish(
            port, count, message, rate=rate, qos=qos, ca_file=ca_file, username=username,
            password=password,
        )
    )  # fmt: skip
    if started is not None:
        started.value = began


LOADGEN = "loadgen"  # the load generator's account on a TLS broker


class Stack:
    """Mosquitto (anonymous; with ``tls``, TLS only with passwords as a secure city has it),
    platform and gateway processes on [::1]."""

    def __init__(
        self, tmp: Path, *, with_gateway: bool = True, rd: str = "off", tls: bool = False
    ) -> None:
        self.tmp = tmp
        self.with_gateway = with_gateway
        self.rd = rd
        # What the load generator logs in with on a TLS broker: (CA file, user, password).
        self.publisher_tls: tuple[str, str, str] | None = None
        login: dict[str, Any] = {}
        if tls:
            creds = CityCredentials(tmp / "security")
            creds.ensure()
            users = creds.mqtt_passwords(["gateway", LOADGEN])
            self.broker = MosquittoBroker(
                port=free_port(), persistence=False, workdir=tmp / "mosquitto",
                users={u: users[u] for u in ("gateway", LOADGEN)}, tls=BrokerTls.of(creds),
                writers=[LOADGEN],
            )  # fmt: skip
            self.publisher_tls = (str(creds.ca_file), LOADGEN, users[LOADGEN])
            login = {"broker_user": "gateway", "broker_password": users["gateway"],
                     "broker_ca": creds.ca_file}  # fmt: skip
        else:
            self.broker = MosquittoBroker(port=free_port(), persistence=False)
        self.platform_port = free_port()
        self.http_port = free_port()
        self.coap_port = free_port("udp")
        logs = tmp / "logs"
        self.platform = ManagedProcess(
            platform_spec(port=self.platform_port, db=tmp / "platform.db", verbose=0),
            log_path=logs / "platform.log",
        )
        options = GatewayOptions(
            platform_url=f"http://[::1]:{self.platform_port}", broker_url=self.broker.url,
            http_port=self.http_port, coap_port=self.coap_port, queue=tmp / "queue.db", rd=rd,
            southbound=False, **login,
        )  # fmt: skip
        # Ready once its MQTT subscription is in place: a reading published then is not lost.
        self.gateway = ManagedProcess(
            gateway_spec(options, verbose=0), log_path=logs / "gateway.log"
        )
        # One kept-alive client for the polls during a run: httpx.get builds a new client (and
        # its SSL context) per call, 18 ms of CPU, and polling 20 times a second took a third
        # of a core from the processes being measured.
        self._client = httpx.Client(timeout=5)

    def __enter__(self) -> Stack:
        with contextlib.ExitStack() as started:
            self.broker.start()
            started.callback(self.broker.close)
            started.enter_context(self.platform)
            if self.with_gateway:
                started.enter_context(self.gateway)
            started.pop_all()  # all up: __exit__ stops them
        return self

    def __exit__(self, *exc: object) -> None:
        self.gateway.stop()
        self.platform.stop()
        self.broker.close()
        self._client.close()

    @property
    def gateway_pid(self) -> int:
        assert self.gateway.pid is not None
        return self.gateway.pid

    def metrics(self) -> str:
        return self._client.get(f"http://[::1]:{self.http_port}/metrics").text

    def forwarded(self) -> float:
        m = FORWARDED.search(self.metrics())
        return float(m.group(1)) if m else 0.0

    def buckets(self) -> list[tuple[float, int]]:
        return [(float(le), int(n)) for le, n in BUCKET.findall(self.metrics())]

    def wait_forwarded(self, target: float, within: float = 300) -> float:
        """The monotonic time at which the platform confirmed the ``target``-th reading.

        Taken from the gateway's last-forward timestamp, not from when this poll (every 50 ms)
        noticed: a 0.5 s run would otherwise count 25 ms too many on average."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            text = self.metrics()
            m = FORWARDED.search(text)
            if m and float(m.group(1)) >= target:
                last = LAST_FORWARD.search(text)
                return time.monotonic() if last is None else monotonic_of(float(last.group(1)))
            time.sleep(0.05)
        raise RuntimeError(f"gateway forwarded {self.forwarded()} of {target} readings")


def run_publisher(
    port: int, fmt: str, count: int, devices: int, rate: float | None,
    tls: tuple[str, str, str] | None = None,
) -> float:  # fmt: skip
    """Publishes in another process; returns the monotonic time of its first publish."""
    started = multiprocessing.Value("d", 0.0)
    proc = multiprocessing.Process(
        target=publisher, args=(port, fmt, count, devices, rate, 1, started),
        kwargs={"tls": tls},
    )  # fmt: skip
    proc.start()
    proc.join()
    return float(started.value)


def throughput(stack: Stack, fmt: str, count: int, devices: int) -> dict[str, float]:
    before = stack.forwarded()
    began = run_publisher(stack.broker.port, fmt, count, devices, None, stack.publisher_tls)
    done = stack.wait_forwarded(before + count)
    return {"readings": count, "seconds": done - began, "readings_per_s": count / (done - began)}


def quantile(buckets: list[tuple[float, int]], q: float) -> float:
    total = buckets[-1][1]
    target = q * total
    previous_le, previous_n = 0.0, 0
    for le, n in buckets:
        if n >= target:
            if le == float("inf"):
                return previous_le
            span = n - previous_n
            share = (target - previous_n) / span if span else 0.0
            return previous_le + (le - previous_le) * share
        previous_le, previous_n = le, n
    return previous_le


def latency(stack: Stack, rate: float, seconds: float, devices: int) -> dict[str, float]:
    before = stack.buckets()
    count = int(rate * seconds)
    start_forwarded = stack.forwarded()
    run_publisher(stack.broker.port, "senml-cbor", count, devices, rate, stack.publisher_tls)
    stack.wait_forwarded(start_forwarded + count)
    after = stack.buckets()
    delta = [(le, n - b) for (le, n), (_, b) in zip(after, before, strict=True)]
    return {
        "offered_per_s": rate,
        "p50_ms": quantile(delta, 0.50) * 1000,
        "p95_ms": quantile(delta, 0.95) * 1000,
        "p99_ms": quantile(delta, 0.99) * 1000,
    }


def memory_per_device(count: int) -> dict[str, float]:
    """RSS of a child process before and after starting ``count`` MQTT devices."""
    code = f"""
import asyncio, resource
from devices.fleet import Fleet
from devices.scenario import Scenario
from benchmarks import loadgen
from testbed.brokers import MosquittoBroker
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024
async def main():
    spec = Scenario.model_validate({{"groups": [{{"kind": "noise", "count": {count}, "interval": 60, "qos": 0}}]}})
    async with MosquittoBroker(port={free_port()}, persistence=False) as broker:
        base = rss()
        async with Fleet(spec, broker=broker.url, use_rd=False) as fleet:
            while fleet.status().mqtt_online < {count}:
                await asyncio.sleep(0.5)
            print(base, rss())
asyncio.run(main())
"""
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    base, full = (int(x) for x in out.stdout.split())
    return {"devices": count, "rss_mb": full / 2**20, "bytes_per_device": (full - base) / count}


class Relay:
    """Counts the bytes (and reads / datagrams) going through it in both directions."""

    def __init__(self) -> None:
        self.bytes = 0
        self.packets = 0


async def tcp_relay(target_port: int, relay: Relay) -> asyncio.Server:
    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            relay.bytes += len(data)
            relay.packets += 1
            writer.write(data)
            await writer.drain()
        writer.close()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("::1", target_port)
        # Python 3.11's stream callback asks a cancelled handler task for its exception and
        # prints a traceback when the loop closes with a relay still open: end quietly.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    return await asyncio.start_server(handle, "::1", 0)


async def wire_bytes(stack: Stack, readings: int) -> list[dict[str, Any]]:
    """Bytes per reading for MQTT (each format, QoS 0 and 1) and CoAP push (SenML CBOR/JSON)."""
    import aiocoap  # noqa: PLC0415
    import aiomqtt  # noqa: PLC0415

    results = []
    for fmt in ("senml-cbor", "senml-json", "vendor-json"):
        for qos in (0, 1):
            relay = Relay()
            server = await tcp_relay(stack.broker.port, relay)
            port = server.sockets[0].getsockname()[1]
            async with aiomqtt.Client("::1", port, identifier="noise-w1") as client:
                relay.bytes = relay.packets = 0  # count readings, not the connection set-up
                for n in range(readings):
                    await client.publish(
                        f"city/noise/noise-w1/up/{fmt}",
                        payload(fmt, "noise-w1", time.time(), n),
                        qos=qos,
                    )
                await asyncio.sleep(0.5)
                counted = (relay.bytes, relay.packets)
            server.close()
            total = counted[0] + counted[1] * (40 + 32)
            results.append({"protocol": f"MQTT 3.1.1 QoS {qos}", "format": fmt,
                            "app_bytes": counted[0] / readings, "wire_bytes": total / readings})  # fmt: skip
    gateway_port = await coap_port_of(stack)
    counter = Relay()
    relay_port = await udp_relay(gateway_port, counter)
    ctx = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        for fmt, cf in (("senml-cbor", 112), ("senml-json", 110)):
            counter.bytes = counter.packets = 0
            for n in range(readings):
                body = payload(fmt, "noise-w2", time.time(), n)
                uri = f"coap://[::1]:{relay_port}/up/noise-w2"
                request = aiocoap.Message(code=aiocoap.POST, uri=uri, payload=body)
                request.opt.content_format = cf
                await ctx.request(request).response
            app = counter.bytes / readings
            wire = (counter.bytes + counter.packets * (40 + 8)) / readings
            results.append(
                {"protocol": "CoAP CON POST", "format": fmt, "app_bytes": app, "wire_bytes": wire}
            )
    finally:
        await ctx.shutdown()
    return results


async def udp_relay(target_port: int, relay: Relay) -> int:
    """A UDP relay on [::1] counting datagrams both ways; returns its port."""
    loop = asyncio.get_running_loop()
    clients: dict[str, Any] = {}

    class Upstream(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            relay.bytes += len(data)
            relay.packets += 1
            front.sendto(data, clients["last"])

    class Front(asyncio.DatagramProtocol):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            relay.bytes += len(data)
            relay.packets += 1
            clients["last"] = addr
            upstream.sendto(data)

    front, _ = await loop.create_datagram_endpoint(Front, local_addr=("::1", 0))
    upstream, _ = await loop.create_datagram_endpoint(Upstream, remote_addr=("::1", target_port))
    port: int = front.get_extra_info("sockname")[1]
    return port


async def coap_port_of(stack: Stack) -> int:
    return stack.coap_port


def table(result: dict[str, Any]) -> str:
    lines = [f"Gateway benchmark ({result['machine']}, {result['date']})", ""]
    lines += ["| ingest path | readings/s |", "|---|---|"]
    for fmt, t in result["throughput"].items():
        lines.append(
            f"| MQTT QoS 1, {fmt} | {t['readings_per_s']:,.0f} ({t['readings']:,} in {t['seconds']:.1f} s) |"
        )
    for fmt, t in result.get("throughput_tls", {}).items():
        lines.append(
            f"| MQTT QoS 1 over TLS (mqtts), {fmt} | {t['readings_per_s']:,.0f} ({t['readings']:,} in {t['seconds']:.1f} s) |"
        )
    lines += ["", "| offered load | p50 | p95 | p99 |", "|---|---|---|---|"]
    for lat in result["latency"]:
        lines.append(
            f"| {lat['offered_per_s']:,.0f} readings/s | {lat['p50_ms']:.1f} ms | "
            f"{lat['p95_ms']:.1f} ms | {lat['p99_ms']:.1f} ms |"
        )
    mem = result["memory"]
    lines += ["", f"Memory: {mem['devices']:,} MQTT devices in one process, RSS {mem['rss_mb']:.0f} MB, "
              f"{mem['bytes_per_device'] / 1024:.1f} KiB per device.", ""]  # fmt: skip
    lines += wire_rows(result["wire"])
    return "\n".join(lines)


def wire_rows(wire: list[dict[str, Any]]) -> list[str]:
    """The bytes-on-the-wire table (also in the suite's table, benchmarks/__main__.py)."""
    head = [
        "| protocol | format | application bytes/reading | on the wire (IPv6) |",
        "|---|---|---|---|",
    ]
    return head + [
        f"| {w['protocol']} | {w['format']} | {w['app_bytes']:.0f} | {w['wire_bytes']:.0f} |"
        for w in wire
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gateway",
        description="Measure one gateway end to end on [::1] with Mosquitto and the platform.",
    )
    parser.add_argument("--quick", action="store_true", help="smaller workloads (about a minute)")
    parser.add_argument("--readings", type=int, help="readings per throughput run (20,000)")
    parser.add_argument("--devices", type=int, default=1000, help="device identities publishing")
    parser.add_argument("--rates", default="500,2000", help="offered loads for latency, per second")
    parser.add_argument("--memory-devices", type=int, help="devices for the memory figure (5,000)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    readings = args.readings or (3000 if args.quick else 20000)
    seconds = 5 if args.quick else 15
    with tempfile.TemporaryDirectory(prefix="r197-gw-bench-") as tmp, Stack(Path(tmp)) as stack:
        result: dict[str, Any] = {
            "machine": f"{host.machine()}, {os.cpu_count()} CPUs, Python {host.python_version()}",
            "date": datetime.now(UTC).strftime("%Y-%m-%d"),
            "throughput": {},
            "latency": [],
        }
        for fmt in ("senml-cbor", "senml-json", "vendor-json"):
            log(f"throughput: {readings:,} readings, {fmt}")
            result["throughput"][fmt] = throughput(stack, fmt, readings, args.devices)
        for rate in (float(r) for r in args.rates.split(",")):
            log(f"latency at {rate:,.0f} readings/s for {seconds} s")
            result["latency"].append(latency(stack, rate, seconds, args.devices))
        log("bytes on the wire")
        result["wire"] = asyncio.run(wire_bytes(stack, 50 if args.quick else 200))
    # The same SenML CBOR workload through a TLS-only broker, as a secure city runs it: devices
    # (here the load generator) and gateway both on TLS 1.3 to Mosquitto.
    with (
        tempfile.TemporaryDirectory(prefix="r197-gw-bench-tls-") as tmp,
        Stack(Path(tmp), tls=True) as stack,
    ):
        log(f"throughput over TLS: {readings:,} readings, senml-cbor")
        result["throughput_tls"] = {
            "senml-cbor": throughput(stack, "senml-cbor", readings, args.devices)
        }
    count = args.memory_devices or (1000 if args.quick else 5000)
    log(f"memory: {count:,} MQTT devices in one process")
    result["memory"] = memory_per_device(count)
    print(table(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
