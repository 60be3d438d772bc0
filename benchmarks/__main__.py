# ruff: noqa: E501  # table rows read best on one line
"""The benchmark suite: ``python -m benchmarks [--quick]``.

Runs every workload on [::1] with real processes, each figure the median of several runs with
min and max, and writes a JSON file and a Markdown table (``benchmarks/results/``):

1. broker ceiling: publish -> subscribe through Mosquitto alone, same payloads, QoS 0 and 1;
2. gateway end to end per ingest path (MQTT SenML CBOR / SenML JSON / vendor JSON, CoAP push),
   readings/s from devices to confirmed platform writes, for several device counts; and MQTT
   SenML CBOR again through a TLS-only broker (mqtts, passwords), as a secure city runs;
3. latency device timestamp -> platform write at fixed offered loads, and the load where p99
   crosses 100 ms;
4. simulator scale: memory per device, CPU per 1,000 readings/s (simulator and gateway);
5. bytes on the wire per reading per protocol x encoding, and idle bytes per device per hour;
6. the platform alone (batch upsert, GET p99, temporal lastN) on SQLite and on PostgreSQL;
7. the Node-RED peer on the MQTT SenML JSON workload, run in turn with ours;
8. the InfluxDB sink's overhead on the platform's batch upsert (VictoriaMetrics as the server);
9. scale-out: readings/s through 1, 2 and 4 gateways of one shared subscription (benchmarks/
   scaleout.py), every reading stored exactly once.

    python -m benchmarks --quick     # about 3 minutes: a smoke run, small sizes, 3 runs each
    python -m benchmarks             # about 15 minutes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import multiprocessing
import os
import platform as host
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks import gateway as gw
from benchmarks import influx as influx_bench
from benchmarks import platform as plat
from benchmarks import scaleout
from benchmarks.peers import nodered
from testbed.parts import devices_spec, rd_spec
from testbed.processes import ManagedProcess

RESULTS = Path(__file__).resolve().parent / "results"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def spread(samples: list[float]) -> dict[str, Any]:
    """Median with min and max (and the samples), the shape of every figure."""
    return {
        "median": statistics.median(samples),
        "min": min(samples),
        "max": max(samples),
        "samples": samples,
    }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# 1. Broker ceiling -------------------------------------------------------------------------


def broker_ceiling(port: int, qos: int, count: int, devices: int) -> float:
    """Messages/s from the load generator through Mosquitto to mosquitto_sub (C, the broker's
    own client): the broker with the lightest subscriber there is, so that what is measured
    is the broker and not a Python client."""
    sub = subprocess.Popen(
        ["mosquitto_sub", "-h", "::1", "-p", str(port), "-t", "bench/#", "-q", str(qos),
         "-C", str(count), "-V", "mqttv311"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    time.sleep(0.5)  # subscribed (mosquitto_sub has no ready signal)
    started = multiprocessing.Value("d", 0.0)
    # The gateway runs' load generator, on bench/ topics nobody but the subscriber reads.
    pub = multiprocessing.Process(
        target=gw.publisher,
        args=(port, "senml-cbor", count, devices, None, qos, started, "bench/{device}/up/{fmt}"),
    )
    pub.start()
    try:
        sub.wait(150)
    except subprocess.TimeoutExpired:
        sub.kill()
        raise RuntimeError(f"mosquitto_sub did not receive {count} messages") from None
    last = time.monotonic()
    pub.join()
    if sub.returncode:
        raise RuntimeError(
            f"mosquitto_sub failed: {sub.stderr.read().decode() if sub.stderr else ''}"
        )
    return float(count / (last - started.value))


# 2. CoAP push ------------------------------------------------------------------------------


def _coap_pusher(port: int, count: int, devices: int, concurrency: int, started: Any) -> None:
    """``concurrency`` push devices, each its own CoAP endpoint (a UDP source port of its own).

    One endpoint has one request outstanding at a time (RFC 7252 4.7, NSTART = 1) and the gateway
    answers 2.04 only once the reading is committed to its durable queue (a group commit every
    10 ms), so a single endpoint is bound by that round trip, as a real push device is.
    """
    import aiocoap  # noqa: PLC0415

    async def run() -> None:
        contexts = [
            await aiocoap.Context.create_client_context(transports=["udp6"])
            for _ in range(concurrency)
        ]
        queue: asyncio.Queue[int] = asyncio.Queue()
        for n in range(count):
            queue.put_nowait(n)

        async def worker(ctx: aiocoap.Context) -> None:
            while not queue.empty():
                n = queue.get_nowait()
                device = f"noise-p{n % devices}"
                body = gw.payload("senml-cbor", device, time.time(), 40 + n % 50)
                request = aiocoap.Message(
                    code=aiocoap.POST, uri=f"coap://[::1]:{port}/up/{device}", payload=body
                )
                request.opt.content_format = 112
                await ctx.request(request).response

        started.value = time.monotonic()  # after the endpoints are set up
        await asyncio.gather(*(worker(ctx) for ctx in contexts))
        for ctx in contexts:
            await ctx.shutdown()

    asyncio.run(run())


class Busy:
    """CPU used by the gateway, platform and broker processes over a measured interval."""

    def __init__(self, stack: gw.Stack) -> None:
        assert stack.broker.proc is not None
        self.pids = {
            "gateway": stack.gateway_pid,
            "platform": stack.platform.pid,
            "broker": stack.broker.proc.pid,
        }
        self.start = {name: cpu_seconds(pid) for name, pid in self.pids.items()}

    def used(self) -> dict[str, float]:
        return {name: cpu_seconds(pid) - self.start[name] for name, pid in self.pids.items()}


def _figures(count: int, seconds: float, used: dict[str, float]) -> dict[str, float]:
    out = {
        "readings_per_s": count / seconds,
        "gateway_cpu_s_per_1000": used["gateway"] / max(count, 1) * 1000,
    }
    # the share of one core each process was busy (1.0 = a whole core): where the time goes
    out |= {f"{name}_busy": cpu / seconds for name, cpu in used.items()}
    return out


def _summary(runs: list[dict[str, float]]) -> dict[str, Any]:
    """Every figure of :func:`_figures` over several runs, as median / min / max."""
    return {key: spread([r[key] for r in runs]) for key in runs[0]}


def coap_push_throughput(stack: gw.Stack, count: int, devices: int) -> dict[str, float]:
    port = asyncio.run(gw.coap_port_of(stack))
    before, busy = stack.forwarded(), Busy(stack)
    started = multiprocessing.Value("d", 0.0)
    proc = multiprocessing.Process(
        target=_coap_pusher, args=(port, count, devices, min(devices, 64), started)
    )
    proc.start()
    proc.join()
    done = stack.wait_forwarded(before + count)
    return _figures(count, done - started.value, busy.used())


def mqtt_throughput(stack: gw.Stack, fmt: str, count: int, devices: int) -> dict[str, float]:
    busy = Busy(stack)
    result = gw.throughput(stack, fmt, count, devices)
    return _figures(count, result["seconds"], busy.used())


@contextlib.contextmanager
def resource_directory() -> Iterator[int]:
    """aiocoap's resource directory (RFC 9176) on [::1]; yields its UDP port once it answers."""
    rd_port = gw.free_port("udp")
    with ManagedProcess(rd_spec(port=rd_port)):
        yield rd_port


def coap_observe_throughput(
    tmp: Path, devices: int, interval: float, window: float
) -> dict[str, float]:
    """CoAP devices registered in a resource directory, observed by the gateway (RFC 7641).

    The devices notify at their own pace (``devices / interval`` readings/s offered); the figure
    is the rate of confirmed platform writes once the gateway observes all of them.
    """
    scenario = tmp / "observe.toml"
    # Consecutive device ports below Linux's ephemeral range (32768-60999), so that no client
    # socket of the run can hold one of them.
    base = random.randrange(20000, 32000 - devices)
    tmp.mkdir(parents=True, exist_ok=True)
    scenario.write_text(
        f'[endpoints]\ncoap_base_port = {base}\n[[groups]]\nkind = "noise"\ncount = {devices}\n'
        f'protocol = "coap"\nformat = "senml-cbor"\ninterval = {interval}\n'
    )
    with (
        resource_directory() as rd_port,
        gw.Stack(tmp / "observe", rd=f"coap://[::1]:{rd_port}") as stack,
    ):
        fleet = ManagedProcess(devices_spec(scenario=scenario, rd=f"coap://[::1]:{rd_port}"))
        fleet.start()
        try:
            # Registration, the gateway's next directory scan (every 5 s), then a steady state.
            deadline = time.monotonic() + 90
            previous, rate = stack.forwarded(), 0.0
            while time.monotonic() < deadline:
                time.sleep(2.0)
                now = stack.forwarded()
                rate, previous = (now - previous) / 2.0, now
                if rate >= 0.9 * devices / interval:
                    break
            busy = Busy(stack)
            start, began = stack.forwarded(), time.monotonic()
            time.sleep(window)
            elapsed = time.monotonic() - began
            figures = _figures(int(stack.forwarded() - start), elapsed, busy.used())
        finally:
            fleet.close()
    figures["offered_per_s"] = devices / interval
    return figures


# 4. Simulator scale ------------------------------------------------------------------------

SCALE_CODE = """
import asyncio, os, time
from devices.fleet import Fleet
from devices.scenario import Scenario
from testbed.brokers import MosquittoBroker
def rss():
    for line in open('/proc/self/status'):
        if line.startswith('VmRSS:'):
            return int(line.split()[1]) * 1024
def cpu():
    t = os.times()
    return t.user + t.system
async def main():
    count, rate = {count}, {rate}
    spec = Scenario.model_validate({{"groups": [{{"kind": "noise", "count": count, "interval": count / rate, "qos": 0}}]}})
    async with MosquittoBroker(port={port}, persistence=False) as broker:
        base = rss()
        async with Fleet(spec, broker=broker.url, use_rd=False) as fleet:
            while fleet.status().mqtt_online < count:
                await asyncio.sleep(0.5)
            await asyncio.sleep(count / rate)  # every device has started publishing
            sent0, cpu0, t0 = fleet.status().sent, cpu(), time.monotonic()
            await asyncio.sleep({window})
            sent, used, wall = fleet.status().sent - sent0, cpu() - cpu0, time.monotonic() - t0
            print(base, rss(), sent / wall, used / wall)
asyncio.run(main())
"""


def simulator_scale(count: int, rate: float, window: float) -> dict[str, float]:
    import subprocess  # noqa: PLC0415

    code = SCALE_CODE.format(count=count, rate=rate, port=gw.free_port(), window=window)
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=gw.ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=900,
    )
    base, full, per_s, cpu_share = (float(x) for x in out.stdout.split())
    return {
        "devices": count,
        "rss_mb": full / 2**20,
        "bytes_per_device": (full - base) / count,
        "readings_per_s": per_s,
        # share of one core used per 1,000 readings/s (1.0 = a whole core)
        "cpu_per_1000_per_s": cpu_share / (per_s / 1000) if per_s else float("nan"),
    }


# 5. Idle bytes -----------------------------------------------------------------------------


async def idle_bytes(stack: gw.Stack, keepalive: int, cycles: int) -> dict[str, float]:
    """MQTT bytes an idle device costs: PINGREQ/PINGRESP through a counting relay."""
    import aiomqtt  # noqa: PLC0415

    relay = gw.Relay()
    server = await gw.tcp_relay(stack.broker.port, relay)
    port = server.sockets[0].getsockname()[1]
    async with aiomqtt.Client("::1", port, identifier="noise-idle", keepalive=keepalive):
        relay.bytes = relay.packets = 0
        await asyncio.sleep(keepalive * cycles + 0.5)
        app, packets = relay.bytes, relay.packets
    server.close()
    per_cycle = (app + packets * (40 + 32)) / cycles
    return {
        "keepalive_s": keepalive,
        "app_bytes_per_cycle": app / cycles,
        "wire_bytes_per_cycle": per_cycle,
        # at the devices' 60 s keep-alive: 60 cycles an hour
        "wire_bytes_per_hour_at_60s": per_cycle * 60,
    }


async def idle_coap_bytes(rd_port: int, cycles: int) -> dict[str, float]:
    """CoAP bytes an idle observed device costs: its resource-directory refreshes (RFC 9176
    5.3.1, an empty POST to its registration, answered 2.04), counted through a UDP relay.

    The device refreshes at half its registration lifetime; here the lifetime is 2 s so that a
    few refreshes take seconds, and the figure per hour is for the devices' 300 s lifetime (a
    refresh every 150 s, 24 an hour).  Nothing else is sent while no reading changes: an
    observation (RFC 7641) costs nothing between notifications.
    """

    import devices.coap as coap_devices  # noqa: PLC0415
    from devices.device import SimDevice  # noqa: PLC0415
    from devices.scenario import Scenario  # noqa: PLC0415

    lifetime = coap_devices.RD_LIFETIME
    short = 2  # seconds of registration lifetime here: a refresh every second
    relay = gw.Relay()
    port = await gw.udp_relay(rd_port, relay)
    spec = Scenario.model_validate(
        {"groups": [{"kind": "noise", "count": 1, "protocol": "coap", "interval": 86400}]}
    ).devices()[0]
    device = coap_devices.CoapDevice(
        SimDevice(spec), host="::1", port=gw.free_port("udp"),
        rd=f"coap://[::1]:{port}", rd_lifetime=short,
    )  # fmt: skip
    async with device:
        deadline = time.monotonic() + 30
        while not device.registered:
            if time.monotonic() > deadline:
                raise RuntimeError("the CoAP device did not register in the directory")
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.5)  # between two refreshes
        relay.bytes = relay.packets = 0  # count refreshes, not the registration
        await asyncio.sleep(cycles * short / 2)
        app, packets = relay.bytes, relay.packets
    per_refresh = (app + packets * (40 + 8)) / cycles
    refreshes_per_hour = 3600 / (lifetime / 2)
    return {
        "rd_lifetime_s": lifetime,
        "app_bytes_per_refresh": app / cycles,
        "wire_bytes_per_refresh": per_refresh,
        "wire_bytes_per_hour": per_refresh * refreshes_per_hour,
    }


# 7. The Node-RED peer ----------------------------------------------------------------------


def peer_run(tmp: Path, count: int, devices: int, rate: float | None) -> dict[str, float]:
    """Node-RED alone between Mosquitto and the platform; readings/s, or latency at ``rate``."""
    with gw.Stack(tmp, with_gateway=False) as stack:
        port = gw.free_port()
        with nodered.NodeRed(tmp / "nodered", port, stack.broker.port, stack.platform_port) as red:
            cpu0 = cpu_seconds(red.pid)
            began = gw.run_publisher(stack.broker.port, "senml-json", count, devices, rate)
            deadline = time.monotonic() + 300
            stats = red.stats()
            while stats["confirmed"] < count:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"Node-RED confirmed {stats['confirmed']} of {count}")
                time.sleep(0.05)
                stats = red.stats()
            # The time of the last confirmation (its wall clock), as for ours (gw.Stack).
            done = gw.monotonic_of(stats["last_ms"] / 1000)
            cpu = cpu_seconds(red.pid) - cpu0
            samples = sorted(red.stats(since=0)["latencies_ms"])
    q = statistics.quantiles(samples, n=100, method="inclusive")
    return {
        "readings_per_s": count / (done - began),
        "cpu_s_per_1000": cpu / count * 1000,
        "p50_ms": q[49],
        "p95_ms": q[94],
        "p99_ms": q[98],
    }


def ours_run(tmp: Path, count: int, devices: int, rate: float | None) -> dict[str, float]:
    with gw.Stack(tmp) as stack:
        cpu0 = cpu_seconds(stack.gateway_pid)
        before = stack.buckets()
        if rate is None:
            result = gw.throughput(stack, "senml-json", count, devices)
        else:
            began = gw.run_publisher(stack.broker.port, "senml-json", count, devices, rate)
            done = stack.wait_forwarded(count)
            result = {"readings_per_s": count / (done - began)}
        cpu = cpu_seconds(stack.gateway_pid) - cpu0
        after = stack.buckets()
    delta = [(le, n - b) for (le, n), (_, b) in zip(after, before, strict=True)]
    return {
        "readings_per_s": result["readings_per_s"],
        "cpu_s_per_1000": cpu / count * 1000,
        "p50_ms": gw.quantile(delta, 0.50) * 1000,
        "p95_ms": gw.quantile(delta, 0.95) * 1000,
        "p99_ms": gw.quantile(delta, 0.99) * 1000,
    }


# The suite ---------------------------------------------------------------------------------


class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.quick = args.quick
        self.runs = args.runs or 3
        self.readings = args.readings or (3000 if self.quick else 20000)
        self.result: dict[str, Any] = {
            "machine": f"{host.machine()}, {os.cpu_count()} CPUs, Python {host.python_version()}",
            "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "mode": "quick" if self.quick else "full",
            "runs": self.runs,
        }

    def repeat(self, what: str, fn: Callable[[], float]) -> dict[str, Any]:
        samples = []
        for n in range(self.runs):
            log(f"  {what}: run {n + 1} of {self.runs}")
            samples.append(fn())
        return spread(samples)

    def run(self, only: set[str]) -> dict[str, Any]:
        with tempfile.TemporaryDirectory(prefix="r197-bench-") as tmp_name:
            tmp = Path(tmp_name)
            if only & {"ceiling", "gateway", "wire"}:  # one shared stack
                with gw.Stack(tmp / "stack") as stack:
                    if "ceiling" in only:
                        self.ceiling(stack)
                    if "gateway" in only:
                        self.gateway(stack)
                    if "wire" in only:
                        self.wire(stack)
            if "latency" in only:
                # A stack of its own: what the earlier workloads leave behind (queue files,
                # platform history, CoAP duplicate records kept 247 s) does not count against
                # latency.
                with gw.Stack(tmp / "latency") as stack:
                    self.latency(stack)
            if "gateway" in only:
                with gw.Stack(tmp / "tls", tls=True) as stack:
                    self.gateway_tls(stack)
                self.observe(tmp)
            if "scale" in only:
                self.scale()
            if "platform" in only:
                self.platform()
            if "peer" in only:
                self.peer(tmp)
            if "influx" in only:
                self.influx()
            if "scaleout" in only:
                self.scaleout()
        return self.result

    def ceiling(self, stack: gw.Stack) -> None:
        log("1. broker ceiling (Mosquitto alone)")
        # Five times the gateway runs' readings: 20,000 messages went through in 0.1-0.3 s, and
        # the QoS 1 figure then ranged from 63,000 to 95,000 msg/s between runs.
        count = self.readings * 5
        self.result["broker_ceiling"] = {
            f"qos{qos}": self.repeat(
                f"QoS {qos}, {count:,} messages",
                functools.partial(broker_ceiling, stack.broker.port, qos, count, 1000),
            )
            for qos in (0, 1)
        }

    def gateway(self, stack: gw.Stack) -> None:
        log("2. gateway end to end")
        device_counts = [100] if self.quick else [100, 1000, 5000]
        out: dict[str, Any] = {}
        for devices in device_counts:
            for path in ("senml-cbor", "senml-json", "vendor-json", "coap-push"):
                runs = []
                for n in range(self.runs):
                    log(
                        f"  {path}, {devices:,} devices, {self.readings:,} readings: run {n + 1} of {self.runs}"
                    )
                    if path == "coap-push":
                        runs.append(coap_push_throughput(stack, self.readings, devices))
                    else:
                        runs.append(mqtt_throughput(stack, path, self.readings, devices))
                out[f"{path}/{devices}"] = {"path": path, "devices": devices} | _summary(runs)
        self.result["gateway"] = out

    def gateway_tls(self, stack: gw.Stack) -> None:
        log("2a. gateway end to end, MQTT over TLS (a secure city's broker)")
        for devices in [100] if self.quick else [100, 1000]:
            runs = []
            for n in range(self.runs):
                log(
                    f"  senml-cbor over TLS, {devices:,} devices, {self.readings:,} readings: run {n + 1} of {self.runs}"
                )
                runs.append(mqtt_throughput(stack, "senml-cbor", self.readings, devices))
            self.result.setdefault("gateway", {})[f"senml-cbor-tls/{devices}"] = {
                "path": "senml-cbor over TLS",
                "devices": devices,
            } | _summary(runs)

    def observe(self, tmp: Path) -> None:
        log("2b. gateway end to end, CoAP observe (devices in a resource directory)")
        offered = 2000.0
        for devices in [100] if self.quick else [100, 1000]:
            runs = []
            for n in range(self.runs):
                log(
                    f"  coap-observe, {devices:,} devices offering {offered:,.0f} readings/s: run {n + 1} of {self.runs}"
                )
                runs.append(
                    coap_observe_throughput(
                        tmp / f"observe-{devices}-{n}",
                        devices,
                        devices / offered,
                        5 if self.quick else 10,
                    )
                )
            # the runs' own offered_per_s is the same figure: the plain number wins
            self.result.setdefault("gateway", {})[f"coap-observe/{devices}"] = _summary(runs) | {
                "path": "coap-observe",
                "devices": devices,
                "offered_per_s": offered,
            }

    def latency(self, stack: gw.Stack) -> None:
        log("3. latency at fixed offered loads (MQTT SenML CBOR, QoS 1)")
        seconds = 3 if self.quick else 10
        rates = [500.0, 2000.0] if self.quick else [500.0, 2000.0, 5000.0]
        out = []
        for rate in rates:
            runs = []
            for n in range(self.runs):
                log(f"  {rate:,.0f} readings/s for {seconds} s: run {n + 1} of {self.runs}")
                runs.append(gw.latency(stack, rate, seconds, 1000))
            out.append(
                {"offered_per_s": rate}
                | {k: spread([r[k] for r in runs]) for k in ("p50_ms", "p95_ms", "p99_ms")}
            )
        self.result["latency"] = out
        if self.quick:
            return
        log("  searching the load where p99 crosses 100 ms")
        crossing = None
        for rate in (1000.0, 2000.0, 3000.0, 4000.0, 5000.0, 6000.0, 8000.0):
            p99 = statistics.median(
                gw.latency(stack, rate, 5, 1000)["p99_ms"] for _ in range(self.runs)
            )
            log(f"  {rate:,.0f}/s: p99 {p99:.0f} ms")
            if p99 > 100:
                crossing = rate
                break
        self.result["p99_over_100ms_at"] = crossing

    def wire(self, stack: gw.Stack) -> None:
        log("5. bytes on the wire, and idle bytes")
        self.result["wire"] = asyncio.run(gw.wire_bytes(stack, 50 if self.quick else 200))
        self.result["idle_mqtt"] = asyncio.run(idle_bytes(stack, 2, 2 if self.quick else 5))
        with resource_directory() as rd_port:
            cycles = 2 if self.quick else 5
            self.result["idle_coap"] = asyncio.run(idle_coap_bytes(rd_port, cycles))

    def scale(self) -> None:
        count = 1000 if self.quick else 5000
        log(f"4. simulator scale: {count:,} MQTT devices at 1,000 readings/s")
        runs = [
            simulator_scale(count, 1000.0, 5 if self.quick else 15)
            for _ in range(1 if self.quick else self.runs)
        ]
        self.result["scale"] = {
            "devices": count,
            "rss_mb": spread([r["rss_mb"] for r in runs]),
            "bytes_per_device": spread([r["bytes_per_device"] for r in runs]),
            "readings_per_s": spread([r["readings_per_s"] for r in runs]),
            "cpu_per_1000_per_s": spread([r["cpu_per_1000_per_s"] for r in runs]),
        }

    def platform(self) -> None:
        log("6. the platform alone")
        scale = 10 if self.quick else 1
        args = argparse.Namespace(
            updates=50_000 // scale, entities=100_000 // scale, history=1_000_000 // scale,
            samples=5_000 // scale, clients=4, repeats=self.runs,
        )  # fmt: skip
        figures: dict[str, dict[str, Any]] = {}
        # The same workload on both storage backends in one run (issue 19): SQLite, then
        # PostgreSQL 15 + PostGIS in a throw-away cluster (testbed.pgcluster, fsync on).
        for backend in ("sqlite", "postgresql"):
            args.backend = backend
            result = plat.run(args)
            runs = result["runs"]
            figures[backend] = {
                "entities": result["entities"],
                "history_rows": result["history_rows"],
                "upsert_updates_per_s": spread(runs["upsert_updates_per_s"]),
                "get_p99_ms": spread(runs["get_p99_ms"]),
                "last_n_p99_ms": spread(runs["last_n_p99_ms"]),
            }
        self.result["platform"] = {**figures["sqlite"], "postgresql": figures["postgresql"]}

    def influx(self) -> None:
        log("8. the InfluxDB sink's overhead")
        args = argparse.Namespace(
            updates=5_000 if self.quick else 50_000, entities=1000, clients=4, repeats=self.runs,
        )  # fmt: skip
        result = influx_bench.run(args)
        self.result["influx"] = {
            "updates": result["updates"],
            **{
                f"{mode}_{key}": spread([r[key] for r in runs])
                for mode, runs in result["runs"].items()
                for key in ("updates_per_s", "cpu_s_per_1000")
            },
            "drain_s": spread([r["drain_s"] for r in result["runs"]["on"]]),
        }

    def scaleout(self) -> None:
        log("9. scale-out: 1, 2 and 4 gateways in one shared subscription")
        counts = [1, 2] if self.quick else [1, 2, 4]
        readings = self.readings
        rows = scaleout.measure(counts, readings, 100, 1 if self.quick else self.runs, False)
        self.result["scaleout"] = {"readings": readings, "devices": 100, "rows": rows}

    def peer(self, tmp: Path) -> None:
        log("7. Node-RED peer, in turn with ours (MQTT SenML JSON)")
        try:
            version = nodered.install()
        except nodered.PeerUnavailable as exc:
            log(f"  peer skipped: {exc}")
            self.result["peer"] = {"error": str(exc)}
            return
        devices = 100 if self.quick else 1000
        rate = 1000.0 if self.quick else 2000.0
        out: dict[str, Any] = {
            "peer": f"Node-RED {version}",
            "devices": devices,
            "latency_load_per_s": rate,
        }
        for label, count, load in (
            ("throughput", self.readings, None),
            ("latency", int(rate * (3 if self.quick else 10)), rate),
        ):
            ours, peer, ratio = [], [], []
            for n in range(self.runs):
                log(f"  {label}: run {n + 1} of {self.runs}: ours")
                o = ours_run(tmp / f"ours-{label}-{n}", count, devices, load)
                log(f"  {label}: run {n + 1} of {self.runs}: Node-RED")
                p = peer_run(tmp / f"peer-{label}-{n}", count, devices, load)
                ours.append(o)
                peer.append(p)
                ratio.append(o["readings_per_s"] / p["readings_per_s"])
            keys = ("readings_per_s", "cpu_s_per_1000", "p50_ms", "p95_ms", "p99_ms")
            out[label] = {
                "ours": {k: spread([r[k] for r in ours]) for k in keys},
                "peer": {k: spread([r[k] for r in peer]) for k in keys},
                "ratio_ours_to_peer": spread(ratio),
            }
        self.result["peer"] = out


def fmt(figure: dict[str, Any], spec: str = ",.0f", unit: str = "") -> str:
    return f"{figure['median']:{spec}}{unit} ({figure['min']:{spec}} to {figure['max']:{spec}})"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"Benchmarks ({result['mode']}, {result['machine']}, {result['date']}); median of {result['runs']} runs (min to max).",
        "",
    ]
    if "broker_ceiling" in result:
        c = result["broker_ceiling"]
        lines += ["| workload | figure |", "|---|---|"]
        lines += [f"| broker ceiling, Mosquitto alone, QoS 0 | {fmt(c['qos0'])} msg/s |",
                  f"| broker ceiling, Mosquitto alone, QoS 1 | {fmt(c['qos1'])} msg/s |", ""]  # fmt: skip
    if "gateway" in result:
        qos1 = result.get("broker_ceiling", {}).get("qos1", {}).get("median")
        lines += [
            "| ingest path | devices | readings/s | of QoS 1 ceiling | gateway CPU s per 1,000 readings | busy (share of a core): gateway / platform / broker |",
            "|---|---|---|---|---|---|",
        ]
        for g in result["gateway"].values():
            share = (
                f"{g['readings_per_s']['median'] / qos1:.0%}"
                if qos1 and not g["path"].startswith("coap") and "TLS" not in g["path"]
                else "-"
            )
            if "offered_per_s" in g:
                share = f"offered {g['offered_per_s']:,.0f}/s"
            busy = " / ".join(
                f"{g[f'{n}_busy']['median']:.2f}" for n in ("gateway", "platform", "broker")
            )
            lines.append(
                f"| {g['path']} | {g['devices']:,} | {fmt(g['readings_per_s'])} | {share} | {fmt(g['gateway_cpu_s_per_1000'], '.2f')} | {busy} |"
            )
        lines.append("")
    if "latency" in result:
        lines += [
            "| offered load (MQTT SenML CBOR, QoS 1) | p50 | p95 | p99 |",
            "|---|---|---|---|",
        ]
        for lat in result["latency"]:
            lines.append(
                f"| {lat['offered_per_s']:,.0f} readings/s | {fmt(lat['p50_ms'], '.1f', ' ms')} | {fmt(lat['p95_ms'], '.1f', ' ms')} | {fmt(lat['p99_ms'], '.1f', ' ms')} |"
            )
        if "p99_over_100ms_at" in result:
            at = result["p99_over_100ms_at"]
            lines.append(
                f"\np99 crosses 100 ms at: {f'{at:,.0f} readings/s' if at else 'not within 8,000 readings/s'}"
            )
        lines.append("")
    if "scale" in result:
        s = result["scale"]
        lines += [f"Simulator: {s['devices']:,} MQTT devices in one process, RSS {fmt(s['rss_mb'], ',.0f', ' MB')}, "
                  f"{fmt(s['bytes_per_device'], ',.0f', ' B')} per device; at {fmt(s['readings_per_s'])} readings/s "
                  f"it uses {fmt(s['cpu_per_1000_per_s'], '.2f')} of a core per 1,000 readings/s.", ""]  # fmt: skip
    if "wire" in result:
        lines += gw.wire_rows(result["wire"])
        idle = result["idle_mqtt"]
        lines += ["", f"Idle MQTT device: {idle['wire_bytes_per_cycle']:.0f} bytes per keep-alive cycle on the wire "
                  f"(PINGREQ + PINGRESP), {idle['wire_bytes_per_hour_at_60s']:,.0f} bytes per hour at the devices' 60 s keep-alive.", ""]  # fmt: skip
        if "idle_coap" in result:
            coap = result["idle_coap"]
            lines[-1:] = [f"Idle CoAP device (observed, nothing new to notify): {coap['wire_bytes_per_refresh']:.0f} bytes on the wire "
                          f"per resource-directory refresh (POST + 2.04), {coap['wire_bytes_per_hour']:,.0f} bytes per hour at a "
                          f"{coap['rd_lifetime_s']:.0f} s registration lifetime (a refresh every {coap['rd_lifetime_s'] / 2:.0f} s).", ""]  # fmt: skip
    if "platform" in result:
        p = result["platform"]
        pg = p.get("postgresql", p)  # runs before issue 19 measured SQLite only
        lines += ["| platform alone | SQLite | PostgreSQL 15 + PostGIS |", "|---|---|---|",
                  f"| batch upsert (100 entities x 5 Properties), attribute updates/s | {fmt(p['upsert_updates_per_s'])} | {fmt(pg['upsert_updates_per_s'])} |",
                  f"| GET /entities/{{id}} p99, {p['entities']:,} entities | {fmt(p['get_p99_ms'], '.2f', ' ms')} | {fmt(pg['get_p99_ms'], '.2f', ' ms')} |",
                  f"| temporal lastN=100 p99, {p['history_rows']:,} history rows | {fmt(p['last_n_p99_ms'], '.2f', ' ms')} | {fmt(pg['last_n_p99_ms'], '.2f', ' ms')} |", ""]  # fmt: skip
    peer = result.get("peer")
    if peer and "error" in peer:
        lines += [f"Peer: not run ({peer['error']}).", ""]
    elif peer:
        lines += [f"Peer: {peer['peer']}, MQTT SenML JSON QoS 1, {peer['devices']:,} devices, run in turn with ours.", "",
                  "| measure | ours | Node-RED | ours / Node-RED |", "|---|---|---|---|"]  # fmt: skip
        t, lat = peer["throughput"], peer["latency"]
        lines.append(
            f"| readings/s, as fast as possible | {fmt(t['ours']['readings_per_s'])} | {fmt(t['peer']['readings_per_s'])} | {fmt(t['ratio_ours_to_peer'], '.2f')} |"
        )
        lines.append(
            f"| CPU s per 1,000 readings | {fmt(t['ours']['cpu_s_per_1000'], '.2f')} | {fmt(t['peer']['cpu_s_per_1000'], '.2f')} | |"
        )
        for k in ("p50_ms", "p95_ms", "p99_ms"):
            lines.append(
                f"| {k[:3]} at {peer['latency_load_per_s']:,.0f} readings/s | {fmt(lat['ours'][k], '.1f', ' ms')} | {fmt(lat['peer'][k], '.1f', ' ms')} | |"
            )
        lines.append("")
    if "influx" in result:
        f = result["influx"]
        lines += [f"| InfluxDB sink, batch upsert of {f['updates']:,} updates | attribute updates/s | platform CPU s per 1,000 |", "|---|---|---|"]  # fmt: skip
        for mode, name in (("off", "no sink"), ("on", "sink to VictoriaMetrics"), ("outage", "sink, server away (outbox)")):  # fmt: skip
            lines.append(
                f"| {name} | {fmt(f[f'{mode}_updates_per_s'])} | {fmt(f[f'{mode}_cpu_s_per_1000'], '.3f')} |"
            )
        lines += [f"\nAll points in VictoriaMetrics {fmt(f['drain_s'], '.2f', ' s')} after the last upsert.", ""]  # fmt: skip
    if "scaleout" in result:
        f = result["scaleout"]
        head = f"Scale-out: MQTT SenML CBOR, {f['devices']} devices, {f['readings']:,} readings a run, every one stored once."
        lines += [head, "", scaleout.table(f["rows"]), ""]
    return "\n".join(lines)


WORKLOADS = (
    "ceiling", "gateway", "latency", "scale", "wire", "platform", "peer", "influx", "scaleout",
)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the benchmark suite on [::1] (broker ceiling, gateway per ingest path, "
        "latency, simulator scale, bytes on the wire, platform, Node-RED peer) and write a JSON "
        "file and a Markdown table.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, about 3 minutes (a smoke run)"
    )
    parser.add_argument(
        "--runs", type=int, help="runs per figure (default 3); the median is reported"
    )
    parser.add_argument(
        "--readings", type=int, help="readings per throughput run (quick 3,000, full 20,000)"
    )
    parser.add_argument("--only", help=f"comma-separated workloads out of {', '.join(WORKLOADS)}")
    parser.add_argument(
        "--out",
        type=Path,
        default=RESULTS,
        help="directory for the JSON and Markdown files (benchmarks/results)",
    )
    args = parser.parse_args(argv)
    only = set(args.only.split(",")) if args.only else set(WORKLOADS)
    if unknown := only - set(WORKLOADS):
        parser.error(
            f"unknown workload(s) {', '.join(sorted(unknown))}; choose from {', '.join(WORKLOADS)}"
        )
    began = time.monotonic()
    result = Suite(args).run(only)
    result["elapsed_s"] = time.monotonic() - began
    table = markdown(result)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = f"bench-{result['mode']}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
    (args.out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (args.out / f"{stem}.md").write_text(table + "\n")
    print(table)
    log(f"written {args.out / stem}.json and .md in {result['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
