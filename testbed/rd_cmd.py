"""``testbed rd``: the CoRE resource directory (RFC 9176), aiocoap's, UDP over IPv6 only.

With ``--oscore FILE`` only provisioned devices may register: a registration (POST to the
directory, RFC 9176 5.3), its updates and its removal (5.3.1, 5.3.2) must be protected with
OSCORE (RFC 8613) in the context of the endpoint they name; unprotected ones get 4.01
Unauthorized, a device registering or changing another endpoint 4.03 Forbidden. Each device's
context with the RD comes from its keys in ``oscore.json`` with the ID Context ``r197-rd``
(devices.oscore), persisted under ``contexts/rd`` next to the file.

Reads stay open (GET/FETCH: ``/.well-known/core`` and the lookup interfaces, RFC 9176 7): what
they give is the endpoint names and base addresses, which the gateway needs and which tell
nothing the devices' own discovery does not; that only provisioned devices are listed is what
makes the answers trustworthy. The readings themselves need the device's OSCORE context.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from pathlib import Path
from typing import Any

from testbed.settings import Settings

log = logging.getLogger(__name__)

DESCRIPTION = __doc__
DEFAULT_PORT = 5783
LOG_EVERY = 60.0  # seconds between log lines about one (endpoint, refusal)


def register(sub: Any, epilog: str) -> None:
    parser = sub.add_parser(
        "rd",
        help="run the resource directory (RFC 9176; --oscore: provisioned devices only)",
        description=DESCRIPTION,
        epilog=epilog + "\nExample: testbed rd --port 5783 --oscore data/city/security/oscore.json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default="::1", help="address to bind (default ::1)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="UDP port (5783)")
    parser.add_argument(
        "--oscore",
        type=Path,
        help="the devices' OSCORE keys (oscore.json): registrations need OSCORE (RFC 8613)",
    )
    parser.set_defaults(func=run_rd)


def _refusal(rd: Any, request: Any) -> Exception | None:
    """Why a request may not change the directory, or None (RFC 9176 5.3 with RFC 8613)."""
    import aiocoap  # noqa: PLC0415

    from devices.oscore import is_protected  # noqa: PLC0415

    if request.code in (aiocoap.GET, aiocoap.FETCH):
        return None  # reads change no registration
    claims = request.remote.security_context.authenticated_claims if is_protected(request) else []
    if not claims:
        unauthorized: Exception = aiocoap.error.Unauthorized("registrations need OSCORE (RFC 8613)")
        return unauthorized
    sender = str(claims[0])
    path = tuple(request.opt.uri_path)
    if path[:1] == tuple(rd.common_rd.entity_prefix):
        registration = rd.common_rd._by_path.get(path[1:])  # aiocoap's table
        if registration is None:
            return None  # the directory answers 4.04 itself
        endpoint = registration.registration_parameters.get("ep", [None])[0]
    else:
        values = [q[3:] for q in request.opt.uri_query if q.startswith("ep=")]
        endpoint = values[0] if len(values) == 1 else None
        if endpoint is None:
            return None  # no or several ep: the directory answers 4.00 itself
    if endpoint != sender:
        forbidden: Exception = aiocoap.error.Forbidden(f"{sender} cannot change {endpoint}")
        return forbidden
    return None


def guarded_directory(context: Any, *, log_to: logging.Logger) -> Any:
    """aiocoap's StandaloneResourceDirectory that refuses unauthenticated changes."""
    from aiocoap.cli.rd import StandaloneResourceDirectory  # noqa: PLC0415

    logged: dict[tuple[str, str], float] = {}

    class GuardedDirectory(StandaloneResourceDirectory):  # type: ignore[misc]
        async def render_to_pipe(self, pipe: Any) -> Any:
            refusal = _refusal(self, pipe.request)
            if refusal is not None:
                key = (str(pipe.request.opt.uri_query)[:120], type(refusal).__name__)
                now = time.monotonic()
                if now - logged.get(key, -LOG_EVERY) >= LOG_EVERY:
                    if len(logged) > 1000:
                        logged.clear()
                    logged[key] = now
                    log_to.warning("RD: refused %s: %s", pipe.request, refusal)
                raise refusal
            return await super().render_to_pipe(pipe)

    return GuardedDirectory(context=context, log=log_to)


class ResourceDirectory:
    """The directory as a daemon: ``await start()``, ``await shutdown()``."""

    def __init__(self, *, host: str, port: int, oscore: Path | None = None) -> None:
        self.host = host
        self.port = port
        self.oscore = oscore
        self.context: Any = None
        self.site: Any = None
        self._contexts: list[Any] = []

    async def start(self) -> None:
        import aiocoap  # noqa: PLC0415
        from aiocoap.credentials import CredentialsMap  # noqa: PLC0415
        from aiocoap.oscore_sitewrapper import OscoreSiteWrapper  # noqa: PLC0415

        credentials = CredentialsMap()
        if self.oscore is not None:
            for device, context in self._open_contexts(self.oscore).items():
                credentials[f":{device}"] = context
        self.context = await aiocoap.Context.create_server_context(
            None, bind=(self.host, self.port), transports=["udp6"], server_credentials=credentials
        )
        rd_log = logging.getLogger("resource-directory")
        if self.oscore is None:
            from aiocoap.cli.rd import StandaloneResourceDirectory  # noqa: PLC0415

            self.site = StandaloneResourceDirectory(context=self.context, log=rd_log)
            self.context.serversite = self.site
        else:
            self.site = guarded_directory(self.context, log_to=rd_log)
            self.context.serversite = OscoreSiteWrapper(self.site, credentials)

    def _open_contexts(self, keys_file: Path) -> dict[str, Any]:
        """The RD's side of each device's RD context (devices.oscore: RD_ID_CONTEXT)."""
        from devices.oscore import RD_ID_CONTEXT, RD_SENDER_ID, open_context, read_keys  # noqa: PLC0415

        root = keys_file.parent / "contexts" / "rd"
        contexts = {}
        for device, keys in read_keys(keys_file).items():
            contexts[device] = open_context(
                root / device, secret=keys.secret, salt=keys.salt, sender_id=RD_SENDER_ID,
                recipient_id=keys.device_id, id_context=RD_ID_CONTEXT, claim=device,
            )  # fmt: skip
            self._contexts.append(contexts[device])
        return contexts

    async def shutdown(self) -> None:
        from devices.oscore import close_context  # noqa: PLC0415

        if self.site is not None:
            await self.site.shutdown()
        if self.context is not None:
            await self.context.shutdown()
        for context in self._contexts:
            close_context(context)
        self._contexts.clear()


def run_rd(args: argparse.Namespace, settings: Settings) -> int:
    from testbed.daemon import run_until_signal  # noqa: PLC0415

    if args.oscore is not None and not args.oscore.exists():
        print(f"testbed rd: no OSCORE keys file {args.oscore}", file=sys.stderr)
        return 2
    rd = ResourceDirectory(host=args.host, port=args.port, oscore=args.oscore)

    async def start() -> None:
        await rd.start()
        host = f"[{args.host}]" if ":" in args.host else args.host
        mode = "registrations with OSCORE only" if args.oscore else "open"
        print(f"rd: coap://{host}:{args.port} ({mode})", file=sys.stderr, flush=True)

    asyncio.run(run_until_signal(start, rd.shutdown))
    return 0
