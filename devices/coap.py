"""CoAP devices (aiocoap): each its own UDP server on [::1], registered in a resource directory.

Resources (docs/wire-formats.md): ``/.well-known/core`` (RFC 6690), observable ``/sensors``
(RFC 7641) in SenML JSON or CBOR by ``Accept`` (4.06 otherwise), ``/log`` large enough for
Block2 (RFC 7959), and for streetlights ``/actuators/powerState`` and ``/actuators/dimmingLevel``.
Push devices POST their readings to the gateway instead, as sleepy devices do.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
from typing import Any

import aiocoap
import cbor2
from aiocoap import pipe as aiocoap_pipe
from aiocoap import resource
from aiocoap.credentials import CredentialsMap
from aiocoap.oscore import NotAProtectedMessage
from aiocoap.oscore_sitewrapper import OscoreSiteWrapper

from devices.device import CONTENT_FORMATS, SimDevice
from devices.oscore import DeviceContexts, is_protected, uri_pattern
from devices.tasks import Background, Parts

log = logging.getLogger(__name__)

SENML_JSON, SENML_CBOR, LINK_FORMAT, TEXT = 110, 112, 40, 0
RD_LIFETIME = 300  # seconds; the registration is refreshed at half of it


def _tolerate_ended_pipes() -> None:
    """Keep an observation alive when aiocoap 0.4.17 ends its pipe inside a callback.

    ``Pipe._add_event`` asks ``_any_interest()`` after its callbacks ran; when one of them
    ended the pipe (``_event_callbacks`` is then ``False``) that raises TypeError inside the
    resource's notification loop and the device silently stops notifying every later
    observer of the resource. An ended pipe has nothing left to end, so say so.
    """
    original = aiocoap_pipe.Pipe._any_interest

    def _any_interest(self: Any) -> bool:
        if self._event_callbacks is False:
            return True
        return bool(original(self))

    aiocoap_pipe.Pipe._any_interest = _any_interest


_tolerate_ended_pipes()


# Critical options (odd numbers, RFC 7252 5.4.6) this device understands: If-Match, Uri-Host,
# If-None-Match, Uri-Port, OSCORE, Uri-Path, Uri-Query, Accept, Block2, Block1, Proxy-Uri,
# Proxy-Scheme.  Any other critical option must be rejected with 4.02 (RFC 7252 5.4.1).
KNOWN_CRITICAL = frozenset({1, 3, 5, 7, 9, 11, 15, 17, 23, 27, 35, 39})


OPEN_PATHS = frozenset({(".well-known", "core")})  # reachable without OSCORE: discovery only


class StrictSite(resource.Site):  # type: ignore[misc]
    """A site that rejects unrecognized critical options, as RFC 7252 5.4.1 requires.

    With ``protected_only`` (behind aiocoap's OSCORE site wrapper) every resource but
    ``/.well-known/core`` answers an unprotected request 4.01 Unauthorized: discovery (RFC
    6690) names resources and types only, the readings and actuators need OSCORE (RFC 8613).
    """

    protected_only = False

    async def render_to_pipe(self, pipe: Any) -> Any:
        request = pipe.request
        for option in request.opt.option_list():
            number = int(option.number)
            if number & 1 and number not in KNOWN_CRITICAL:
                raise aiocoap.error.BadOption(f"unrecognized critical option {number}")
        path = request.opt.uri_path
        if self.protected_only and path not in OPEN_PATHS and not is_protected(request):
            raise aiocoap.error.Unauthorized("OSCORE required (RFC 8613)")
        return await super().render_to_pipe(pipe)


def etag_of(payload: bytes) -> bytes:
    """A strong entity tag (RFC 7252 5.10.6): 4 bytes of a hash of the representation."""
    return hashlib.blake2b(payload, digest_size=4).digest()


def validated(request: aiocoap.Message, response: aiocoap.Message) -> aiocoap.Message:
    """Tag a 2.05 response; 2.03 Valid when the client holds it already (RFC 7252 5.9.1.3)."""
    tag = etag_of(response.payload)
    if tag in request.opt.etags:
        answer = aiocoap.Message(code=aiocoap.VALID)
        answer.opt.etag = tag
        answer.opt.max_age = response.opt.max_age
        return answer
    response.opt.etag = tag
    return response


class LinkFilterWKC(resource.WKCResource):  # type: ignore[misc]
    """``/.well-known/core`` where every query filter applies (RFC 6690 4.1, RFC 9176 7).

    aiocoap's own filter closures bind the attribute name late, so with two Uri-Query options
    both filter on the last attribute; this builds each filter with its own name and value.
    """

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        links = self.listgenerator()
        for query in request.opt.uri_query:
            key, sep, want = query.partition("=")
            if not sep:
                continue  # no '=': not a filter (RFC 6690 4.1)
            links.links = [link for link in links.links if _matches(link, key, want)]
        return resource.link_format_to_message(request, links)


def _matches(link: Any, key: str, want: str) -> bool:
    values = [link.href] if key == "href" else " ".join(getattr(link, key, ())).split(" ")
    if want.endswith("*"):  # prefix match (RFC 6690 4.1)
        return any(v.startswith(want[:-1]) for v in values)
    return want in values


class Sensors(resource.ObservableResource):  # type: ignore[misc]
    def __init__(self, device: SimDevice) -> None:
        super().__init__()
        self.device = device

    def get_link_description(self) -> dict[str, Any]:
        desc: dict[str, Any] = super().get_link_description()
        desc.update({"rt": f"r197.{self.device.kind}", "if": "core.s", "ct": "110 112"})
        return desc

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        accept = request.opt.accept
        accept = SENML_JSON if accept is None else int(accept)
        if accept not in (SENML_JSON, SENML_CBOR):
            return aiocoap.Message(code=aiocoap.NOT_ACCEPTABLE)
        if not self.device.current:
            self.device.read()
        payload, _ = self.device.encode("senml-json" if accept == SENML_JSON else "senml-cbor")
        self.device.counters.sent += 1
        # Max-Age: the reading is fresh until the next one is due, so an observer that hears
        # nothing for longer knows its registration is gone and registers again (RFC 7641 3.3.1).
        max_age = max(1, round(self.device.spec.group.interval)) + 1
        response = aiocoap.Message(payload=payload, content_format=accept)
        response.opt.max_age = max_age
        return validated(request, response)


class Log(resource.Resource):  # type: ignore[misc]
    def __init__(self, device: SimDevice) -> None:
        super().__init__()
        self.device = device

    def get_link_description(self) -> dict[str, Any]:
        desc: dict[str, Any] = super().get_link_description()
        desc.update({"rt": "r197.log", "ct": "110"})
        return desc

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        if not self.device.history:
            self.device.read()
        return aiocoap.Message(payload=self.device.log_pack(), content_format=SENML_JSON)


def rd_path(payload: bytes) -> str:
    """The registration path in the directory's /.well-known/core answer (the first link's
    target, RFC 9176 5.3).  What is no link-format (RFC 6690 3: UTF-8, ``<target>``) is an
    aiocoap error, which the registration loop retries: a UnicodeDecodeError, or a ValueError
    of a '<' without its '>', ended the loop."""
    try:
        text = bytes(payload).decode()
    except UnicodeDecodeError:
        raise aiocoap.error.Error("the directory's answer is not UTF-8 (RFC 6690 3)") from None
    start = text.find("<")
    end = text.find(">", start + 1)
    if start < 0 or end < 0:
        raise aiocoap.error.NotFound("no core.rd link in the directory")
    return text[start + 1 : end]


class Actuator(resource.Resource):  # type: ignore[misc]
    def __init__(self, device: SimDevice, name: str, on_change: Any) -> None:
        super().__init__()
        self.device = device
        self.name = name
        self.on_change = on_change

    def get_link_description(self) -> dict[str, Any]:
        desc: dict[str, Any] = super().get_link_description()
        desc.update({"rt": f"r197.{self.name}", "if": "core.a", "ct": "0 110 112"})
        return desc

    async def render_get(self, request: aiocoap.Message) -> aiocoap.Message:
        value = (
            self.device.state.power_state
            if self.name == "powerState"
            else self.device.state.dimming
        )
        return validated(request, aiocoap.Message(payload=str(value).encode(), content_format=TEXT))

    async def render_put(self, request: aiocoap.Message) -> aiocoap.Message:
        fmt = request.opt.content_format
        value: Any
        try:
            if fmt is None or int(fmt) == TEXT:
                text = request.payload.decode()
                value = text if self.name == "powerState" else float(text)
            elif int(fmt) in (SENML_JSON, SENML_CBOR):
                records = (
                    json.loads(request.payload)
                    if int(fmt) == SENML_JSON
                    else [{"v": r.get(2), "vs": r.get(3)} for r in cbor2.loads(request.payload)]
                )
                first = records[0]
                value = first.get("vs") if self.name == "powerState" else first.get("v")
            else:
                return aiocoap.Message(code=aiocoap.UNSUPPORTED_CONTENT_FORMAT)
        # KeyError: a JSON object, not a pack ({}[0]); RecursionError: JSON nested a thousand
        # deep fits in one datagram.  Both were 5.00 (RFC 7252 5.9.2: a bad request is 4.00).
        except (ValueError, TypeError, IndexError, KeyError, AttributeError, RecursionError,
                cbor2.CBORDecodeError):  # fmt: skip
            return aiocoap.Message(code=aiocoap.BAD_REQUEST, payload=b"unreadable value")
        valid = (
            value in ("on", "off")
            if self.name == "powerState"
            else isinstance(value, float | int) and 0 <= value <= 100
        )
        if not valid:
            return aiocoap.Message(code=aiocoap.BAD_REQUEST, payload=b"value out of range")
        self.device.state.apply_command({self.name: value})
        self.device.counters.commands += 1
        self.on_change()
        return aiocoap.Message(code=aiocoap.CHANGED)


class CoapDevice(Parts):
    """A CoAP server for one device, reading every ``interval`` and notifying observers."""

    def __init__(
        self,
        device: SimDevice,
        *,
        host: str,
        port: int,
        rd: str | None,
        rd_lifetime: int = RD_LIFETIME,
        oscore: DeviceContexts | None = None,
    ) -> None:
        self.device = device
        self.oscore = oscore
        self.host = host
        self.port = port
        self.rd = rd.rstrip("/") if rd else None
        self.rd_lifetime = rd_lifetime  # seconds; the registration is refreshed at half of it
        self.site = StrictSite()
        self.site.protected_only = oscore is not None
        self.sensors = Sensors(device)
        self.site.add_resource(
            [".well-known", "core"],
            LinkFilterWKC(self.site.get_resources_as_linkheader, impl_info=None),
        )
        self.site.add_resource(["sensors"], self.sensors)
        self.site.add_resource(["log"], Log(device))
        if device.kind == "streetlight":
            for name in ("powerState", "dimmingLevel"):
                self.site.add_resource(["actuators", name], Actuator(device, name, self._changed))
        self.context: Any = None
        self.registered = False
        self._stack = contextlib.AsyncExitStack()

    @property
    def uri(self) -> str:
        return f"coap://[{self.host}]:{self.port}"

    def _changed(self) -> None:
        self.device.read()
        self.sensors.updated_state()

    async def __aenter__(self) -> CoapDevice:
        async with contextlib.AsyncExitStack() as stack:
            site: Any = self.site
            server_credentials = CredentialsMap()
            if self.oscore is not None:
                # The device's one context with the gateway (RFC 8613 3): requests, answers
                # and Observe notifications (RFC 8613 4.1.3.5) to and from the gateway.
                server_credentials[":gateway"] = self.oscore.gateway
                site = OscoreSiteWrapper(self.site, server_credentials)
            self.context = await aiocoap.Context.create_server_context(
                site, bind=(self.host, self.port), server_credentials=server_credentials,
                transports=["oscore", "udp6"] if self.oscore else ["udp6"],
            )  # fmt: skip
            stack.push_async_callback(self.context.shutdown)
            if self.oscore is not None and self.rd:
                # Registrations go to the RD protected with the device's RD context.
                self.context.client_credentials[uri_pattern(self.rd)] = self.oscore.rd
            tasks = await stack.enter_async_context(Background())
            name = self.device.device_id
            tasks.start(self._sampling(), name=f"{name} sampling")
            if self.rd:
                tasks.start(self._registration(), name=f"{name} registration")
            self._stack = stack.pop_all()
        return self

    async def _sampling(self) -> None:
        interval = self.device.spec.group.interval
        self.device.read()
        await asyncio.sleep(random.random() * min(interval, 5.0))
        next_at = time.monotonic()
        while True:
            if self.device.read() is not None:
                self.sensors.updated_state()
            next_at += interval
            await asyncio.sleep(max(next_at - time.monotonic(), 0.0))

    async def _registration(self) -> None:
        """Register in the RD (RFC 9176 5.3) after discovering its interface; refresh it."""
        backoff = 1.0
        location: str | None = None
        while True:
            try:
                if location is None:
                    location = await self._register()
                    log.info("%s registered in the RD at %s", self.device.device_id, location)
                else:
                    refresh = aiocoap.Message(code=aiocoap.POST, uri=f"{self.rd}{location}")
                    answer = await self.context.request(refresh).response
                    if not answer.code.is_successful():
                        location = None
                        continue
                self.registered = True
                backoff = 1.0
                await asyncio.sleep(self.rd_lifetime / 2)
            except (aiocoap.error.Error, OSError) as exc:
                self.registered = False
                log.info("%s: RD not reachable (%s)", self.device.device_id, exc)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)

    async def _register(self) -> str:
        ask = aiocoap.Message(code=aiocoap.GET, uri=f"{self.rd}/.well-known/core?rt=core.rd")
        wkc = await self.context.request(ask).response
        path = rd_path(wkc.payload)
        links = self.site.get_resources_as_linkheader()
        query = f"ep={self.device.device_id}&lt={self.rd_lifetime}"
        if self.host not in ("::", "0.0.0.0"):  # noqa: S104
            query += f"&base={self.uri}"  # else the RD takes our source address (RFC 9176 5.3)
        register = aiocoap.Message(
            code=aiocoap.POST,
            uri=f"{self.rd}{path}?{query}",
            payload=str(links).encode(),
            content_format=LINK_FORMAT,
        )
        answer = await self.context.request(register).response
        if answer.code != aiocoap.CREATED:
            raise aiocoap.error.Error(f"registration answered {answer.code}")
        return "/" + "/".join(answer.opt.location_path)


class PushDevice:
    """A sleepy device: wakes up, POSTs a reading to the gateway, sleeps."""

    def __init__(
        self, device: SimDevice, *, gateway: str, context: Any, oscore: DeviceContexts | None = None
    ) -> None:
        self.device = device
        self.url = f"{gateway.rstrip('/')}/up/{device.device_id}"
        self.context = context
        self.last_code: str | None = None
        if oscore is not None:
            # Every POST of this device goes out protected with its own context (RFC 8613
            # 8.1); the shared client context picks it by the exact request URI.
            key = uri_pattern(gateway, f"/up/{device.device_id}")
            context.client_credentials[key] = oscore.gateway

    async def push_once(self) -> None:
        if self.device.read() is None:
            return
        payload, _ = self.device.encode()
        fmt = self.device.spec.group.format
        request = aiocoap.Message(
            code=aiocoap.POST, uri=self.url, payload=payload, content_format=CONTENT_FORMATS[fmt]
        )
        if self.device.spec.group.qos == 0:
            request.mtype = aiocoap.NON
        try:
            answer = await asyncio.wait_for(self.context.request(request).response, 30)
        except NotAProtectedMessage as exc:
            # The gateway refused the protected request in the clear (RFC 8613 8.2: no
            # context, replay, decryption failed): its answer, not a transport failure.
            answer = exc.plain_message
        except (aiocoap.error.Error, OSError, TimeoutError) as exc:
            self.device.counters.failed += 1
            log.info("%s: push failed (%s)", self.device.device_id, exc)
            return
        self.last_code = str(answer.code)
        if answer.code.is_successful():
            self.device.counters.sent += 1
        else:
            self.device.counters.failed += 1
            detail = answer.payload[:80].decode(errors="replace")
            log.warning("%s: gateway answered %s %s", self.device.device_id, answer.code, detail)

    async def run(self) -> None:
        interval = self.device.spec.group.interval
        await asyncio.sleep(random.random() * min(interval, 5.0))
        next_at = time.monotonic()
        while True:
            await self.push_once()
            next_at += interval
            await asyncio.sleep(max(next_at - time.monotonic(), 0.0))
