"""The gateway daemon: transports -> normalizer -> uplink, plus metrics and southbound.

Every inbound payload goes through :meth:`Gateway.ingest`: it is normalized (pure), counted,
and handed to the uplink; a rejected payload is counted per reason and device and logged at
most once a minute per (device, reason), so a flood of bad input neither stops good data nor
floods the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import orjson
import uvicorn

from city_platform.models import entity_id
from gateway.errors import RejectedPayload
from gateway.http import RECENT, build_app
from gateway.metrics import DeviceLabels, Metrics
from gateway.normalizer import Inbound, Normalized, normalize
from gateway.oscore import GatewayOscore
from gateway.profiles import Profiles
from gateway.southbound import Actuators, actuator_subscription
from gateway.tasks import Background, Parts
from gateway.thinning import Thinning
from gateway.transports.coap import CoapIngest, CoapObserver
from gateway.transports.mqtt import MqttIngest
from gateway.uplink import Uplink, platform_headers

log = logging.getLogger(__name__)
LOG_EVERY = 60.0  # seconds between two log lines for the same (device, reason)
_BY_PROTOCOL = {p: (("protocol", p),) for p in ("mqtt", "coap")}  # metric label keys, made once


@dataclass
class GatewayConfig:
    platform_url: str = "http://[::1]:8000"
    tenant: str = ""
    queue_path: Path = field(default_factory=lambda: Path("gateway-queue.db"))
    broker_url: str | None = "mqtt://[::1]:1883"
    broker_username: str | None = "gateway"
    broker_password: str | None = None
    broker_ca: Path | None = None  # the CA the mqtts:// broker's certificate must chain to
    shared_group: str = "r197-gateways"
    client_id: str = "r197-gateway"  # stable, so the broker keeps our session across restarts
    coap_host: str | None = "::1"  # CoAP ingest for push devices; None: off
    coap_port: int = 5684
    rd_url: str | None = "coap://[::1]:5783"  # resource directory to observe devices; None: off
    http_host: str = "::1"
    http_port: int = 8081  # /metrics, /health, /notify; 0 picks a free port
    southbound: bool = True
    batch_entities: int = 2000  # per lane; see docs/benchmarks.md
    uplink_lanes: int = 2  # batch upserts in flight at once (each device stays in one lane)
    profiles_dir: Path | None = None
    static_refresh: float = 60.0  # seconds between re-sends of unchanged refDevice/location/Device
    platform_token: str | None = None  # bearer token (RFC 6750) on every request to the platform
    notify_token: str | None = None  # bearer token that POST /notify requires; None: open
    oscore_file: Path | None = None  # devices' OSCORE keys (oscore.json): CoAP only with OSCORE


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside our loop: signals stay with the program's own handlers."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Gateway(Parts):
    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.device_labels = DeviceLabels(self.metrics)
        self.profiles = Profiles(config.profiles_dir)
        self.actuators = Actuators(self.profiles)
        self.thinning = Thinning(config.static_refresh)
        self.uplink = Uplink(
            platform_url=config.platform_url,
            queue_path=config.queue_path,
            tenant=config.tenant,
            batch_entities=config.batch_entities,
            lanes=config.uplink_lanes,
            metrics=self.metrics,
            token=config.platform_token,
        )
        self.mqtt: MqttIngest | None = None
        self.observer: CoapObserver | None = None
        self._last_log: dict[tuple[str, str], float] = {}
        self._protocol_of: dict[str, str] = {}
        self._heard: dict[str, float] = {}  # device -> monotonic time of its last good reading
        self._http: uvicorn.Server | None = None
        self._stack = contextlib.AsyncExitStack()
        self.http_port = config.http_port

    # -- the pipeline -------------------------------------------------------------------------

    def _normalize(self, inbound: Inbound) -> tuple[Any, RejectedPayload | None]:
        by_protocol = _BY_PROTOCOL.get(inbound.protocol) or (("protocol", inbound.protocol),)
        self.metrics.add("r197_gateway_received_total", by_protocol)
        try:
            item = normalize(inbound, self.profiles)
        except RejectedPayload as exc:
            device = inbound.device_id
            label = self.device_labels.label(device, known=device in self._heard)
            self.metrics.inc("r197_gateway_rejected_total", reason=exc.reason, device=label)
            now = time.monotonic()
            # Per label: devices folded into "other" share one log line a minute per reason.
            if now - self._last_log.get((label, exc.reason), -LOG_EVERY) >= LOG_EVERY:
                self._last_log[(label, exc.reason)] = now
                shown = "(unnamed)" if device is None else device[:80]
                log.warning("rejected payload from %s over %s: %s", shown, inbound.protocol, exc)
            return None, exc
        self.metrics.add("r197_gateway_normalized_total", by_protocol, item.readings)
        device_id, kind, readings, entities, observed_at = item
        now = time.monotonic()
        thinned = self.thinning.thin(entities, now)
        self._heard[device_id] = now
        item = Normalized(device_id, kind, readings, thinned, observed_at)
        self._protocol_of[device_id] = inbound.protocol
        profile = self.profiles.get(kind)
        if profile is not None and profile.actuators:
            for entity in thinned:
                if entity.get("type") != "Device":
                    self.actuators.wrote(device_id, entity, profile.actuators)
        return item, None

    def ingest(self, inbound: Inbound) -> RejectedPayload | None:
        """Normalize and queue; never raises for bad input."""
        item, rejected = self._normalize(inbound)
        if item is not None:
            self.uplink.submit(item)
        return rejected

    async def ingest_durably(self, inbound: Inbound) -> RejectedPayload | None:
        """As :meth:`ingest`, returning once the reading is on disk (CoAP answers after it)."""
        item, rejected = self._normalize(inbound)
        if item is not None:
            await self.uplink.accept(item)
        return rejected

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start every part; a part that fails to start stops the ones already started."""
        cfg = self.config
        async with contextlib.AsyncExitStack() as stack:
            await stack.enter_async_context(self.uplink)
            oscore = None
            if cfg.oscore_file is not None and (cfg.coap_host or cfg.rd_url):
                # One context per device, shared by ingest and observer (gateway/oscore.py);
                # closed after both stopped, so the sequence numbers written are the last.
                oscore = GatewayOscore(cfg.oscore_file)
                stack.callback(oscore.close)
            if cfg.coap_host:
                await stack.enter_async_context(
                    CoapIngest(
                        host=cfg.coap_host, port=cfg.coap_port, handler=self.ingest_durably,
                        oscore=oscore,
                    )
                )  # fmt: skip
            if cfg.rd_url:
                self.observer = await stack.enter_async_context(
                    CoapObserver(rd_url=cfg.rd_url, handler=self.ingest_durably, oscore=oscore)
                )
            tasks = await stack.enter_async_context(Background())
            # Left first: uvicorn stops taking requests before its task is cancelled.
            stack.callback(self._stop_http)
            if cfg.broker_url:
                self.mqtt = MqttIngest(
                    url=cfg.broker_url,
                    handler=self.ingest,
                    commit=self.uplink.commit,
                    username=cfg.broker_username,
                    password=cfg.broker_password,
                    group=cfg.shared_group,
                    client_id=cfg.client_id,
                    ca_file=cfg.broker_ca,
                )
                tasks.start(self.mqtt.run(), name="mqtt ingest")
            await self._start_http(tasks)
            if cfg.southbound:
                tasks.start(self._subscribe(), name="southbound")
            self._stack = stack.pop_all()

    async def shutdown(self) -> None:
        """Stop every part; raises what made a loop of ours fail, if one did (DESIGN 4)."""
        await self._stack.aclose()

    async def __aenter__(self) -> Gateway:
        await self.start()
        return self

    def _stop_http(self) -> None:
        if self._http is not None:
            self._http.should_exit = True

    async def _start_http(self, tasks: Background) -> None:
        app = build_app(
            self.metrics, self._on_notification, self.health,
            notify_token=self.config.notify_token, recent_ids=self.recent_ids,
        )  # fmt: skip
        config = uvicorn.Config(
            app,
            host=self.config.http_host,
            port=self.config.http_port,
            log_level="warning",
            access_log=False,
            lifespan="off",
        )
        self._http = _EmbeddedServer(config)
        tasks.start(self._http.serve(), name="gateway http")
        while not self._http.started:  # noqa: ASYNC110  # uvicorn offers no start event
            await asyncio.sleep(0.01)
        sockets = [s for server in self._http.servers for s in server.sockets]
        self.http_port = sockets[0].getsockname()[1] if sockets else self.config.http_port

    def health(self, recent: float = RECENT) -> dict[str, Any]:
        """The gateway's state; ``devicesRecent`` counts the devices whose last accepted reading
        is at most ``recent`` seconds old (what `testbed up` calls online)."""
        since = time.monotonic() - recent
        return {
            "devicesRecent": sum(1 for t in self._heard.values() if t >= since),
            "devicesSeen": len(self._heard),
            "platform": self.uplink.platform_state,
            "queued": self.uplink.queued,
            "mqtt": bool(self.mqtt and self.mqtt.connected.is_set()),
            "coapObserved": self.observer.observed if self.observer else 0,
            "received": self.metrics.value("r197_gateway_received_total"),
            "normalized": self.metrics.value("r197_gateway_normalized_total"),
            "forwarded": self.metrics.value("r197_gateway_forwarded_total"),
            "rejected": self.metrics.value("r197_gateway_rejected_total"),
        }

    def recent_ids(self, recent: float = RECENT) -> list[str]:
        """The devices :meth:`health` counts in ``devicesRecent``."""
        since = time.monotonic() - recent
        return sorted(d for d, t in self._heard.items() if t >= since)

    # -- southbound ---------------------------------------------------------------------------

    async def _subscribe(self) -> None:
        """Create (or refresh) the actuator subscription, retrying until the platform answers."""
        host = self.config.http_host
        shown = f"[{host}]" if ":" in host else host
        endpoint = f"http://{shown}:{self.http_port}/notify"
        sub_id = entity_id("Subscription", f"r197-gateway-{self.http_port}")
        doc = actuator_subscription(
            self.profiles, endpoint, sub_id, notify_token=self.config.notify_token
        )
        headers = platform_headers(self.config.tenant, self.config.platform_token)
        api = self.config.platform_url.rstrip("/") + "/ngsi-ld/v1/subscriptions"
        delay, refused = 0.5, 0
        async with httpx.AsyncClient(headers=headers, timeout=5) as client:
            while True:
                try:
                    answer = await client.post(api, json=doc)
                    if answer.status_code == 409:
                        patch = {k: v for k, v in doc.items() if k not in ("id", "type")}
                        answer = await client.patch(f"{api}/{sub_id}", json=patch)
                    if answer.status_code in (201, 204):
                        log.info("southbound: subscribed to actuator changes at %s", endpoint)
                        return
                    if answer.status_code != refused:  # once per status, not every retry
                        refused = answer.status_code
                        log.warning(
                            "southbound: subscription refused with %s: %s",
                            refused,
                            answer.text[:200],
                        )
                except httpx.HTTPError as exc:
                    log.debug("southbound: platform not reachable yet: %s", exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)

    async def _on_notification(self, body: dict[str, Any]) -> None:
        for entity in body.get("data", []):
            if not isinstance(entity, dict):
                continue
            found = self.actuators.commands(entity)
            if found is None:
                continue
            kind, device, command = found
            label = self.device_labels.label(device, known=device in self._heard)
            try:
                await self._relay(kind, device, command)
                self.metrics.inc("r197_gateway_commands_total", device=label)
            except Exception as exc:  # one failed device must not stop the rest
                log.warning("southbound: command to %s failed: %s", device[:80], exc)
                self.metrics.inc("r197_gateway_command_failures_total", device=label)

    async def _relay(self, kind: str, device: str, command: dict[str, Any]) -> None:
        protocol = self._protocol_of.get(device, "mqtt")
        if protocol == "mqtt":
            if self.mqtt is None:
                raise RuntimeError("no MQTT connection for commands")
            topic = f"city/{kind}/{device}/cmd"
            await self.mqtt.publish(topic, orjson.dumps(command), "application/json")
            log.info("southbound: %s <- %s", device, command)
            return
        if self.observer is None:
            raise RuntimeError("no CoAP client for commands")
        await self.observer.put_actuators(device, command)
