"""CoAP transports with aiocoap, UDP over IPv6 only.

- :class:`CoapIngest` is the endpoint push devices POST readings to (``/up/<device id>``),
  answering 2.04 Changed, or 4.00 / 4.04 / 4.13 / 4.15 from the rejection (RFC 7252 5.9).
- :class:`CoapObserver` finds devices in the resource directory (RFC 9176 endpoint lookup),
  observes their ``/sensors`` resource (RFC 7641) in SenML CBOR and re-observes a device
  whose observation ends (device restart, lost notifications).

With a :class:`~gateway.oscore.GatewayOscore` both speak OSCORE (RFC 8613) only: the ingest
answers an unprotected POST 4.01 and a device pushing under another device's id 4.03 (the
context authenticates the sender, RFC 8613 12.1); aiocoap's site wrapper answers an unknown kid
4.01 "Security context not found", a replay 4.01 "Replay detected" (RFC 8613 7.4) and a wrong
key 4.00 "Decryption failed" (RFC 8613 8.2 step 6). The observer protects its observations and
actuator PUTs with the device's context.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import aiocoap
from aiocoap import resource

from gateway.errors import RejectedPayload
from gateway.normalizer import COAP_FORMATS, Inbound
from gateway.oscore import GatewayOscore, authenticated_device
from gateway.tasks import Background, Parts
from gateway.transports import coap_dedup

log = logging.getLogger(__name__)

# The handler answers None when the reading is durably accepted, else the rejection.
Handler = Callable[[Inbound], Awaitable[RejectedPayload | None]]
SENML_CBOR = 112
_LINK = re.compile(r"<([^>]*)>((?:;[^,;]+(?:=(?:\"[^\"]*\"|[^,;]*))?)*)")
_ATTR = re.compile(r";([^=;,]+)(?:=(\"[^\"]*\"|[^;,]*))?")
REFUSAL_LOG_EVERY = 60.0  # seconds between log lines about one (device, refusal)


def parse_link_format(text: str) -> list[tuple[str, dict[str, str]]]:
    """RFC 6690 links as (target, attributes)."""
    links = []
    for match in _LINK.finditer(text):
        attrs = {k: v.strip('"') for k, v in _ATTR.findall(match.group(2))}
        links.append((match.group(1), attrs))
    return links


def _link_text(message: aiocoap.Message) -> str:
    """A directory answer's link-format, UTF-8 by RFC 6690 3.  Anything else is an aiocoap
    error, which the scan logs and retries: a UnicodeDecodeError ended the scan task (and
    with it the gateway's CoAP observer)."""
    try:
        return bytes(message.payload).decode()
    except UnicodeDecodeError:
        raise aiocoap.error.Error(
            "the resource directory's answer is not UTF-8 (RFC 6690 3)"
        ) from None


def _code(pair: tuple[int, int]) -> aiocoap.numbers.codes.Code:
    return aiocoap.numbers.codes.Code(pair[0] << 5 | pair[1])


def _remote_host(remote: Any) -> str | None:
    """The sender's address; UDP remotes give it in their socket address at no cost (the
    ``hostinfo`` string aiocoap builds, normalized through ``ipaddress``, was 9 % of the
    gateway's time on CoAP pushes)."""
    sockaddr = getattr(remote, "sockaddr", None)
    if sockaddr is not None:
        address = str(sockaddr[0])
        return address[7:] if address.startswith("::ffff:") else address
    hostinfo = getattr(remote, "hostinfo", None)
    return urlsplit(f"coap://{hostinfo}").hostname if hostinfo else None


class _UpResource(resource.Resource, resource.PathCapable):  # type: ignore[misc]
    def __init__(self, handler: Handler, *, protected: bool = False) -> None:
        super().__init__()
        self.handler = handler
        self.protected = protected
        self._logged: dict[tuple[str, str], float] = {}

    def _refuse(self, code: aiocoap.numbers.codes.Code, device: str, why: str) -> aiocoap.Message:
        """A refusal, logged once a minute per (device in the path, reason)."""
        now = time.monotonic()
        key = (device[:80], why)
        if now - self._logged.get(key, -REFUSAL_LOG_EVERY) >= REFUSAL_LOG_EVERY:
            if len(self._logged) > 1000:
                self._logged.clear()
            self._logged[key] = now
            log.warning("CoAP: push for %r refused (%s): %s", device[:80], code, why)
        return aiocoap.Message(code=code, payload=why.encode()[:200])

    async def render_post(self, request: aiocoap.Message) -> aiocoap.Message:
        path = request.opt.uri_path
        if len(path) != 1 or not path[0]:
            return aiocoap.Message(code=aiocoap.NOT_FOUND, payload=b"POST to /up/<device id>")
        if self.protected:
            sender = authenticated_device(request.remote)
            if sender is None:
                return self._refuse(aiocoap.UNAUTHORIZED, path[0], "OSCORE required (RFC 8613)")
            if sender != path[0]:
                # The context names the sender (RFC 8613 12.1): one device's key must not
                # speak for another.
                return self._refuse(aiocoap.FORBIDDEN, path[0], f"context of {sender}")
        fmt = COAP_FORMATS.get(int(request.opt.content_format or 0))
        if request.opt.content_format is None:
            fmt = None
        if fmt is None:
            return aiocoap.Message(
                code=aiocoap.UNSUPPORTED_CONTENT_FORMAT,
                payload=b"Content-Format must be 110, 112, 50 or 0",
            )
        host = _remote_host(request.remote)
        inbound = Inbound("coap", request.payload, fmt, time.time(), path[0], host)
        rejected = await self.handler(inbound)
        if rejected is not None:
            return aiocoap.Message(
                code=_code(rejected.coap_code), payload=rejected.detail.encode()[:200]
            )
        return aiocoap.Message(code=aiocoap.CHANGED)


class CoapIngest(Parts):
    """The gateway's CoAP server for push devices."""

    def __init__(
        self, *, host: str, port: int, handler: Handler, oscore: GatewayOscore | None = None
    ) -> None:
        self.host = host
        self.port = port
        self.oscore = oscore
        site = resource.Site()
        site.add_resource(
            [".well-known", "core"], resource.WKCResource(site.get_resources_as_linkheader)
        )
        site.add_resource(["up"], _UpResource(handler, protected=oscore is not None))
        self._site = site
        self.duplicates: coap_dedup.DuplicateTable | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> CoapIngest:
        async with contextlib.AsyncExitStack() as stack:
            site: Any = self._site
            credentials = None
            if self.oscore is not None:
                from aiocoap.oscore_sitewrapper import OscoreSiteWrapper  # noqa: PLC0415

                credentials = self.oscore.server_credentials()
                site = OscoreSiteWrapper(self._site, credentials)
            context = await aiocoap.Context.create_server_context(
                site, bind=(self.host, self.port), transports=["udp6"],
                server_credentials=credentials,
            )  # fmt: skip
            stack.push_async_callback(context.shutdown)
            self.duplicates = coap_dedup.install(context)
            if self.duplicates is not None:
                tasks = await stack.enter_async_context(Background())
                tasks.start(self._expire(self.duplicates), name="coap dedup")
            self._stack = stack.pop_all()
        log.info("CoAP ingest listening at coap://[%s]:%d/up/<device>", self.host, self.port)
        return self

    @staticmethod
    async def _expire(table: coap_dedup.DuplicateTable) -> None:
        """Entries also leave when no request comes to push them out (after a burst)."""
        while True:
            await asyncio.sleep(coap_dedup.EXPIRE_EVERY)
            table.expire()


STALE_MARGIN = 5.0  # seconds past Max-Age before an observation counts as lost


def _max_age(message: aiocoap.Message) -> float:
    value = message.opt.max_age
    return float(60 if value is None else value)  # default Max-Age (RFC 7252 5.10.5)


class CoapObserver(Parts):
    """Discovers CoAP devices in the resource directory and observes their readings.

    ``async with`` it: one task scans the directory, one task per device observes it, all in
    one TaskGroup (DESIGN 4).
    """

    def __init__(
        self,
        *,
        rd_url: str,
        handler: Handler,
        rescan: float = 5.0,
        oscore: GatewayOscore | None = None,
    ) -> None:
        self.rd_url = rd_url.rstrip("/")
        self.handler = handler
        self.rescan = rescan
        self.oscore = oscore
        self._unkeyed: set[str] = set()
        self._context: Any = None
        self._observing: dict[str, asyncio.Task[None]] = {}
        self.bases: dict[str, str] = {}
        self.lookup_path: str | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> CoapObserver:
        async with contextlib.AsyncExitStack() as stack:
            self._context = await aiocoap.Context.create_client_context(
                transports=["oscore", "udp6"] if self.oscore else ["udp6"]
            )
            stack.push_async_callback(self._context.shutdown)
            tasks = await stack.enter_async_context(Background())
            tasks.start(self._scan(tasks), name="coap observe")
            self._stack = stack.pop_all()
        return self

    async def _scan(self, tasks: Background) -> None:
        """Look the devices up every ``rescan`` seconds; observe each one not observed."""
        while True:
            try:
                for device, base in await self._endpoints():
                    task = self._observing.get(device)
                    if task is None or task.done():
                        self._observing[device] = tasks.start(
                            self._observe(device, base), name=f"observe {device}"
                        )
            except (aiocoap.error.Error, OSError) as exc:
                log.info("CoAP: resource directory %s unavailable: %s", self.rd_url, exc)
            await asyncio.sleep(self.rescan)

    @property
    def observed(self) -> int:
        return sum(1 for t in self._observing.values() if not t.done())

    async def _get(self, uri: str) -> aiocoap.Message:
        request = aiocoap.Message(code=aiocoap.GET, uri=uri)
        response: aiocoap.Message = await self._context.request(request).response
        return response

    async def _endpoints(self) -> list[tuple[str, str]]:
        """(device id, base URI) of every registered endpoint (RFC 9176 section 7)."""
        if self.lookup_path is None:
            wkc = await self._get(f"{self.rd_url}/.well-known/core?rt=core.rd-lookup-ep")
            links = parse_link_format(_link_text(wkc))
            if not links:
                raise aiocoap.error.NotFound("no core.rd-lookup-ep in the directory")
            self.lookup_path = links[0][0]
        answer = await self._get(self.rd_url + self.lookup_path)
        found = []
        for target, attrs in parse_link_format(_link_text(answer)):
            device = attrs.get("ep")
            base = attrs.get("base") or target
            if device and base.startswith("coap://"):
                if self.oscore is not None and not self._protect(device, base.rstrip("/")):
                    continue
                found.append((device, base.rstrip("/")))
                self.bases[device] = base.rstrip("/")
        return found

    def _protect(self, device: str, base: str) -> bool:
        """Use the device's context for every request to ``base`` (observe, PUT); a device
        without keys is not observed (the gateway speaks OSCORE only)."""
        assert self.oscore is not None
        context = self.oscore.contexts.get(device)
        if context is None:
            if device not in self._unkeyed:
                self._unkeyed.add(device)
                log.warning("CoAP: %s is in the directory but has no OSCORE context", device[:80])
            return False
        # The key aiocoap matches: the request URI as aiocoap writes it (default port dropped).
        uri = aiocoap.Message(code=aiocoap.GET, uri=f"{base}/x").get_request_uri()
        self._context.client_credentials[uri[: -len("/x")] + "/*"] = context
        return True

    async def _observe(self, device: str, base: str) -> None:
        request = aiocoap.Message(code=aiocoap.GET, uri=f"{base}/sensors", observe=0)
        request.opt.accept = SENML_CBOR
        host = urlsplit(base).hostname
        pending = self._context.request(request)
        try:
            first = await pending.response
            await self._handle(device, host, first)
            log.info("CoAP: observing %s at %s/sensors", device, base)
            notifications = aiter(pending.observation)
            fresh_for = _max_age(first)
            while True:
                # A device that restarted has forgotten us and stays silent: once the last
                # representation is older than its Max-Age plus a margin, register again
                # (RFC 7641 3.3.1) instead of waiting for ever.
                try:
                    notification = await asyncio.wait_for(
                        anext(notifications), fresh_for + STALE_MARGIN
                    )
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    log.info("CoAP: %s silent past Max-Age; registering again", device)
                    break
                fresh_for = _max_age(notification)
                await self._handle(device, host, notification)
        except (aiocoap.error.Error, OSError) as exc:
            log.info("CoAP: observation of %s ended (%s); will re-observe", device, exc)
        finally:
            # An observation that ended in an error is cancelled already; aiocoap asserts
            # against a second cancel.
            if pending.observation is not None and not pending.observation.cancelled:
                pending.observation.cancel()

    async def _handle(self, device: str, host: str | None, message: aiocoap.Message) -> None:
        if not message.code.is_successful():
            log.warning("CoAP: %s answered %s", device, message.code)
            return
        fmt = COAP_FORMATS.get(int(message.opt.content_format or 0))
        if fmt is None:
            log.warning("CoAP: %s sent Content-Format %s", device, message.opt.content_format)
            return
        await self.handler(Inbound("coap", message.payload, fmt, time.time(), device, host))

    async def put_actuators(self, device: str, command: dict[str, Any]) -> None:
        """PUT each commanded value as text to ``/actuators/<name>`` (wire contract)."""
        base = self.bases.get(device)
        if base is None or self._context is None:
            raise LookupError(f"CoAP device {device!r} is not in the resource directory")
        for name, value in command.items():
            request = aiocoap.Message(
                code=aiocoap.PUT, uri=f"{base}/actuators/{name}", payload=str(value).encode()
            )
            request.opt.content_format = 0
            answer = await self._context.request(request).response
            if not answer.code.is_successful():
                raise RuntimeError(f"{device} answered {answer.code} to PUT {name}")
