"""Shared fixtures: free ports and real platform processes on [::1]."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port(
    family: socket.AddressFamily = socket.AF_INET6, kind: int = socket.SOCK_STREAM
) -> int:
    """A port that is free on [::1] right now (the OS picks it)."""
    with socket.socket(family, kind) as sock:
        sock.bind(("::1", 0))
        port: int = sock.getsockname()[1]
        return port


class PlatformProcess:
    """``testbed platform`` running as a real process on [::1]."""

    def __init__(
        self, *, db: str = ":memory:", port: int | None = None, verbose: str = "-v"
    ) -> None:
        self.verbose = verbose
        self.port = port or free_port()
        self.db = db
        self.base = f"http://[::1]:{self.port}"
        self.api = self.base + "/ngsi-ld/v1"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "testbed",
                self.verbose,
                "platform",
                "--host",
                "::1",
                "--port",
                str(self.port),
                "--db",
                self.db,
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read().decode() if self.proc.stdout else ""
                raise RuntimeError(f"platform exited with {self.proc.returncode}:\n{out}")
            try:
                if httpx.get(self.base + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("platform did not answer /health within 30 s")

    def stop(self) -> str:
        """Stop with SIGTERM and return what it printed."""
        if self.proc is None:
            return ""
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.proc = None
        return out.decode(errors="replace")


@pytest.fixture(scope="module")
def platform() -> Iterator[PlatformProcess]:
    """One real platform per test module; tests isolate themselves with their own tenant."""
    proc = PlatformProcess()
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def tenant() -> str:
    """A fresh NGSI-LD tenant name, so tests never see each other's entities."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def client(platform: PlatformProcess, tenant: str) -> Iterator[httpx.Client]:
    """An HTTP client bound to the platform API and to this test's own tenant."""
    with httpx.Client(base_url=platform.api, headers={"NGSILD-Tenant": tenant}, timeout=10) as c:
        yield c
