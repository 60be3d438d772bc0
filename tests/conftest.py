"""Shared fixtures: real platform processes on [::1], started by the testbed's process layer."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx
import pytest

from testbed.parts import ROOT, platform_spec
from testbed.pgcluster import PgCluster
from testbed.processes import ManagedProcess, ProcessFailed, free_port

__all__ = ["ROOT", "PlatformProcess", "free_port"]


class PlatformProcess:
    """``testbed platform`` running as a real process on [::1]."""

    def __init__(
        self,
        *,
        db: str = ":memory:",
        port: int | None = None,
        verbose: int = 1,
        auth_key: Path | None = None,
        allow_endpoints: Sequence[str] = (),
        influx: Sequence[str] = (),
    ) -> None:
        self.port = port or free_port()
        self.db = db
        self.base = f"http://[::1]:{self.port}"
        self.api = self.base + "/ngsi-ld/v1"
        # Remote @context fetching stays allowed, as a user's platform has it by default.
        spec = platform_spec(
            port=self.port,
            db=db,
            verbose=verbose,
            remote_contexts=True,
            auth_key=auth_key,
            allow_endpoints=allow_endpoints,
            influx=influx,
        )
        self.process = ManagedProcess(spec)
        self._printed = 0  # bytes of the log already returned by an earlier stop()

    def start(self) -> None:
        try:
            self.process.start()
        except ProcessFailed as exc:
            raise RuntimeError(str(exc)) from None

    def stop(self) -> str:
        """Stop with SIGTERM and return what it printed since it was started."""
        self.process.stop()
        out = self.process.output()
        printed, self._printed = self._printed, len(out)
        return out[printed:]


@pytest.fixture(scope="module")
def platform(request: pytest.FixtureRequest) -> Iterator[PlatformProcess]:
    """One real platform per test module; tests isolate themselves with their own tenant.
    R197_TEST_DB=postgresql puts it on a fresh PostgreSQL database of the session's cluster
    (the API suites on the other backend; CI runs them on SQLite)."""
    db = ":memory:"
    if os.environ.get("R197_TEST_DB") == "postgresql":
        cluster: PgCluster = request.getfixturevalue("pg_cluster")
        db = cluster.create_database(f"m_{uuid.uuid4().hex[:12]}")
    proc = PlatformProcess(db=db)
    proc.start()
    yield proc
    proc.stop()
    proc.process.close()


@pytest.fixture
def tenant() -> str:
    """A fresh NGSI-LD tenant name, so tests never see each other's entities."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
def client(platform: PlatformProcess, tenant: str) -> Iterator[httpx.Client]:
    """An HTTP client bound to the platform API and to this test's own tenant."""
    with httpx.Client(base_url=platform.api, headers={"NGSILD-Tenant": tenant}, timeout=10) as c:
        yield c


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PgCluster]:
    """One PostgreSQL 15 + PostGIS cluster for the session (testbed/pgcluster.py: as root it
    runs as ``nobody``, initdb refuses root); tests take a fresh database each
    (:func:`pg_database`).  No postgresql-15 installed: the test fails saying so."""
    with PgCluster() as cluster:
        yield cluster


@pytest.fixture
def pg_database(pg_cluster: PgCluster) -> str:
    """The URL of a new empty database on the session's cluster."""
    return pg_cluster.create_database(f"t_{uuid.uuid4().hex[:12]}")
