"""Managed child processes: the one way the testbed starts, checks, stops and logs its programs.

`testbed up`, the conformance reference stack, the test fixtures and the benchmarks all start
the same programs (Mosquitto, the platform, the gateway, a resource directory, device fleets).
Each is described by a :class:`ProcessSpec` (command line, environment, the ports it will bind,
how to tell it is ready) and run by a :class:`ManagedProcess`:

- start: spawn with stdout and stderr appended to a log file, then wait until the program
  answers (HTTP 200, a TCP connect, or a CoAP ping answered, RFC 7252 §4.3), failing early and
  with the log's tail if the process exits first;
- stop: SIGTERM, then SIGKILL after a grace period; the log stays for whoever reads it.

Both a blocking interface (``start``/``stop``, ``with``) for pytest fixtures and benchmarks and
an asynchronous one (``async with``) for `testbed up` are offered; a failed or cancelled start
leaves nothing running.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

import httpx

log = logging.getLogger(__name__)

Transport = Literal["tcp", "udp"]
_SOCK = {"tcp": socket.SOCK_STREAM, "udp": socket.SOCK_DGRAM}
_COAP_PING = bytes([0x40, 0x00, 0x12, 0x34])  # CON, code 0.00, message id 0x1234, no token


class ProcessError(RuntimeError):
    """Root of the process layer's errors.

    ProcessError
    ├── PortInUse       a port a part needs is taken before it starts
    └── ProcessFailed   a part exited or did not answer in time while starting
    """


class PortInUse(ProcessError):
    def __init__(self, claim: PortClaim) -> None:
        self.claim = claim
        hint = f"; choose another with {claim.option}" if claim.option else ""
        super().__init__(
            f"{claim.transport.upper()} port {claim.port} on {_shown(claim.host)} "
            f"({claim.owner}) is already in use{hint}"
        )


class ProcessFailed(ProcessError):
    def __init__(self, name: str, reason: str, log_tail: str = "") -> None:
        self.name = name
        self.reason = reason
        self.log_tail = log_tail
        text = f"{name} {reason}"
        if log_tail:
            text += f"; its log ends with:\n{log_tail}"
        super().__init__(text)


def _shown(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def valid_port(port: int) -> int:
    """``port`` if it is a usable TCP/UDP port number (1-65535), else ValueError."""
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is outside 1-65535")
    return port


def port_arg(text: str) -> int:
    """An argparse type: a port number 1-65535 (99999 is refused, not replaced)."""
    try:
        return valid_port(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (1-65535)") from None


def free_port(transport: Transport = "tcp", host: str = "::1") -> int:
    """A port that is free on ``host`` right now (the OS picks it)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, _SOCK[transport]) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True)
class PortClaim:
    """A port a part will bind: who, which, and the option a user changes it with."""

    owner: str
    port: int
    transport: Transport = "tcp"
    host: str = "::1"
    option: str | None = None

    def __post_init__(self) -> None:
        valid_port(self.port)

    def in_use(self) -> bool:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, _SOCK[self.transport]) as sock:
            if self.transport == "tcp":
                # As the servers themselves bind: a port in TIME_WAIT is not "in use".
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((self.host, self.port))
            except OSError:
                return True
            return False


def check_ports(claims: Iterable[PortClaim]) -> None:
    """Raise :class:`PortInUse` for the first claimed port that is taken."""
    for claim in claims:
        if claim.in_use():
            raise PortInUse(claim)


class Probe(Protocol):
    """Answers whether a started program is ready; each call is short (about a second)."""

    def __call__(self) -> bool: ...


@dataclass(frozen=True)
class HttpReady:
    """Ready when ``GET url`` answers 200 (and its JSON has ``require`` true, if given)."""

    url: str
    require: str | None = None

    def __call__(self) -> bool:
        try:
            answer = httpx.get(self.url, timeout=1)
            if answer.status_code != 200:
                return False
            return self.require is None or bool(answer.json().get(self.require))
        except (httpx.HTTPError, ValueError, AttributeError):
            return False


@dataclass(frozen=True)
class TcpReady:
    """Ready when a TCP connection to (host, port) is accepted."""

    host: str
    port: int

    def __call__(self) -> bool:
        try:
            with socket.create_connection((self.host, self.port), timeout=0.5):
                return True
        except OSError:
            return False


@dataclass(frozen=True)
class CoapReady:
    """Ready when a CoAP ping (empty CON) is answered, RFC 7252 §4.3."""

    host: str
    port: int

    def __call__(self) -> bool:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.3)
            try:
                sock.sendto(_COAP_PING, (self.host, self.port))
                sock.recv(64)
            except OSError:
                return False
            return True


@dataclass(frozen=True)
class ProcessSpec:
    """How to run one program of the testbed."""

    name: str
    argv: tuple[str, ...]
    ready: Probe | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    ports: tuple[PortClaim, ...] = ()
    start_timeout: float = 30.0
    stop_timeout: float = 15.0

    def __post_init__(self) -> None:
        if not self.argv:
            raise ValueError(f"{self.name}: empty command line")


class ManagedProcess:
    """One child process: spawned, waited for, stopped, with its output kept in a log file."""

    def __init__(self, spec: ProcessSpec, *, log_path: Path | None = None) -> None:
        self.spec = spec
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if log_path is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"r197-{spec.name}-")
            log_path = Path(self._tmp.name) / f"{spec.name}.log"
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def __repr__(self) -> str:
        return f"<ManagedProcess {self.spec.name} pid={self.pid} alive={self.alive}>"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    @property
    def returncode(self) -> int | None:
        return self.proc.poll() if self.proc is not None else None

    def output(self) -> str:
        """Everything the program wrote so far (its log file)."""
        try:
            return self.log_path.read_bytes().decode(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 15) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    # -- blocking interface -------------------------------------------------------------------

    def spawn(self) -> None:
        """Start the program without waiting for it to answer."""
        if self.alive:
            raise ProcessError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.spec.env}
        with self.log_path.open("ab") as out:
            # The child keeps its own copy of the descriptor; ours is closed at once.
            self.proc = subprocess.Popen(
                self.spec.argv, cwd=self.spec.cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )  # fmt: skip
        self.starts += 1
        log.info("%s started (pid %d), log %s", self.name, self.proc.pid, self.log_path)

    def _answers(self) -> bool:
        return self.spec.ready is None or self.spec.ready()

    def _ready(self, answered: bool, deadline: float) -> bool:
        """One step of waiting: True once ready; ProcessFailed if it exited or ran out of time."""
        code = self.returncode
        if code is not None:
            raise ProcessFailed(self.name, f"exited with {code} while starting", self.log_tail())
        if answered:
            return True
        if time.monotonic() > deadline:
            within = f"did not answer within {self.spec.start_timeout:g} s"
            raise ProcessFailed(self.name, within, self.log_tail())
        return False

    def start(self) -> None:
        """Spawn and block until the program answers; on failure nothing is left running."""
        self.spawn()
        deadline = time.monotonic() + self.spec.start_timeout
        try:
            while not self._ready(self._answers(), deadline):
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> int | None:
        """SIGTERM, then SIGKILL after ``stop_timeout``; returns the exit status."""
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=self.spec.stop_timeout)
            except subprocess.TimeoutExpired:
                grace = self.spec.stop_timeout
                log.warning("%s ignored SIGTERM for %g s: killed", self.name, grace)
                proc.kill()
                proc.wait()
            log.info("%s stopped with %s", self.name, proc.returncode)
        return proc.returncode

    def signal(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` without waiting (tests kill parts with it)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def close(self) -> None:
        self.stop()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> ManagedProcess:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- asynchronous interface ---------------------------------------------------------------

    async def astart(self) -> None:
        """As :meth:`start`, without blocking the event loop; cancellable."""
        self.spawn()
        deadline = time.monotonic() + self.spec.start_timeout
        try:
            # A poll, not an event: a child process can only be asked whether it answers yet.
            while not self._ready(await asyncio.to_thread(self._answers), deadline):  # noqa: ASYNC110
                await asyncio.sleep(0.05)
        except BaseException:
            # Cancelled (Ctrl-C during start-up) or failed: the child must not outlive us.
            await asyncio.shield(asyncio.to_thread(self.stop))
            raise

    async def astop(self) -> int | None:
        return await asyncio.shield(asyncio.to_thread(self.stop))

    async def __aenter__(self) -> ManagedProcess:
        await self.astart()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.astop()
