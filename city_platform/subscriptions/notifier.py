"""Delivery of notifications over HTTP (CIM 009 5.11.2 / 7.2) and MQTT, with retries.

This is the one place where httpx and MQTT errors become delivery outcomes.

MQTT endpoints (``mqtt[s]://[user[:password]@]host[:port]/topic``, the MQTT binding of
5.2.15) get one message per notification on the topic: a JSON object whose ``metadata`` holds
what HTTP would send as headers (Content-Type, Link, the receiverInfo pairs) and whose
``body`` is the notification.  notifierInfo ``MQTT-Version`` (mqtt3.1.1, default, or mqtt5.0)
and ``MQTT-QoS`` (0, default, 1 or 2) choose the protocol level and QoS.  Each notification
opens its own connection: simple, and enough for the testbed's rates.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson

from city_platform.ldcontext import CORE_CONTEXT_URL

log = logging.getLogger(__name__)

JSON_LD = "application/ld+json"
GEO_JSON = "application/geo+json"
CONTEXT_REL = "http://www.w3.org/ns/json-ld#context"
RETRY_DELAYS = (0.5, 2.0)  # three tries in all, then the notification counts as failed
TIMEOUT = httpx.Timeout(5.0, connect=2.0)
MAX_TIMEOUT_S = 30.0  # endpoint.timeout above this is overridden (5.2.15 allows it)


@dataclass(frozen=True)
class Outcome:
    ok: bool
    detail: str = ""


def notification_body(sub_id: str, data: Any, now: str) -> dict[str, Any]:
    """A Notification (5.3.1); ``data`` is the entities or a GeoJSON FeatureCollection."""
    return {
        "id": f"urn:ngsi-ld:Notification:{uuid.uuid4()}",
        "type": "Notification",
        "subscriptionId": sub_id,
        "notifiedAt": now,
        "data": data,
    }


class Notifier:
    """Posts notifications; one shared connection pool for every subscription."""

    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._client = client or httpx.AsyncClient(timeout=TIMEOUT)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(
        self,
        endpoint: dict[str, Any],
        body: dict[str, Any],
        *,
        context: Any,
        tenant: str,
    ) -> Outcome:
        """Deliver ``body`` to ``endpoint``, retrying transient failures."""
        headers = {
            str(i["key"]): str(i["value"]) for i in endpoint.get("receiverInfo", ()) if "key" in i
        }
        if tenant:
            headers["NGSILD-Tenant"] = tenant
        ctx_value = context if context is not None else CORE_CONTEXT_URL
        if endpoint.get("accept") == JSON_LD:
            document = {**body, "@context": ctx_value}
            headers["Content-Type"] = JSON_LD
        elif endpoint.get("accept") == GEO_JSON:  # the FeatureCollection in data has @context
            document = body
            headers["Content-Type"] = GEO_JSON
            url = ctx_value if isinstance(ctx_value, str) else CORE_CONTEXT_URL
            headers["Link"] = f'<{url}>; rel="{CONTEXT_REL}"; type="{JSON_LD}"'
        else:
            document = body
            headers["Content-Type"] = "application/json"
            url = ctx_value if isinstance(ctx_value, str) else CORE_CONTEXT_URL
            headers["Link"] = f'<{url}>; rel="{CONTEXT_REL}"; type="{JSON_LD}"'
        mqtt = str(endpoint["uri"]).startswith(("mqtt://", "mqtts://"))
        if mqtt:
            payload = orjson.dumps({"metadata": headers, "body": document})
        else:
            payload = orjson.dumps(document)
        wait = _timeout(endpoint)
        outcome = Outcome(ok=False)
        for attempt, delay in enumerate((*RETRY_DELAYS, None)):
            if mqtt:
                outcome = await _publish(endpoint, payload, wait)
            else:
                outcome = await self._post(endpoint["uri"], payload, headers, wait)
            if outcome.ok:
                return outcome
            log.info(
                "notification to %s failed (try %d): %s",
                endpoint["uri"],
                attempt + 1,
                outcome.detail,
            )
            if delay is not None:
                await asyncio.sleep(delay)
        log.warning("notification to %s failed: %s", endpoint["uri"], outcome.detail)
        return outcome

    async def _post(
        self, uri: str, payload: bytes, headers: dict[str, str], wait: float | None
    ) -> Outcome:
        timeout = TIMEOUT if wait is None else httpx.Timeout(wait, connect=min(wait, 2.0))
        try:
            answer = await self._client.post(uri, content=payload, headers=headers, timeout=timeout)
        except httpx.HTTPError as exc:
            return Outcome(ok=False, detail=f"{type(exc).__name__}: {exc}")
        if 200 <= answer.status_code < 300:
            return Outcome(ok=True)
        return Outcome(ok=False, detail=f"HTTP {answer.status_code}")


def _timeout(endpoint: dict[str, Any]) -> float | None:
    """endpoint.timeout (5.2.15, milliseconds) in seconds, at most MAX_TIMEOUT_S."""
    ms = endpoint.get("timeout")
    return None if ms is None else min(float(ms) / 1000, MAX_TIMEOUT_S)


async def _publish(endpoint: dict[str, Any], payload: bytes, wait: float | None) -> Outcome:
    """One MQTT notification: connect, publish on the endpoint's topic, disconnect."""
    try:
        import aiomqtt  # noqa: PLC0415 - optional: only MQTT endpoints need it
    except ImportError:
        return Outcome(ok=False, detail="aiomqtt is not installed")
    parts = urlsplit(str(endpoint["uri"]))
    secure = parts.scheme == "mqtts"
    info = {str(i["key"]): str(i["value"]) for i in endpoint.get("notifierInfo", ())}
    version = (
        aiomqtt.ProtocolVersion.V5
        if info.get("MQTT-Version") == "mqtt5.0"
        else aiomqtt.ProtocolVersion.V311
    )
    try:
        async with (
            asyncio.timeout(wait or TIMEOUT.read or 5.0),
            aiomqtt.Client(
                parts.hostname or "",
                parts.port or (8883 if secure else 1883),
                username=unquote(parts.username) if parts.username else None,
                password=unquote(parts.password) if parts.password else None,
                protocol=version,
                tls_params=aiomqtt.TLSParameters() if secure else None,
                timeout=TIMEOUT.connect or 2.0,
            ) as client,
        ):
            await client.publish(
                unquote(parts.path[1:]), payload, qos=int(info.get("MQTT-QoS", "0"))
            )
    except (aiomqtt.MqttError, OSError, TimeoutError, ValueError) as exc:
        return Outcome(ok=False, detail=f"MQTT {type(exc).__name__}: {exc}")
    return Outcome(ok=True)
