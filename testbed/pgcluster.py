"""A throw-away PostgreSQL 15 cluster on [::1] for tests and benchmarks (Debian's binaries).

``initdb`` and ``postgres`` refuse to run as root.  As root (CI) the cluster therefore runs as
the unprivileged ``nobody`` user through ``runuser -u nobody``: its directory is made with
``tempfile.mkdtemp`` directly under the system temp dir (pytest's tmp_path sits below a 0700
root directory that nobody cannot enter) and handed to nobody with chown.  As a normal user the
binaries run as that user.  The cluster trusts local connections (``--auth=trust``: it listens
on [::1] and a socket in its own directory only) and its superuser is ``postgres``.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from testbed.processes import free_port

BIN = Path(os.environ.get("R197_PG_BIN", "/usr/lib/postgresql/15/bin"))
RUN_AS = "nobody"  # when we are root


class ClusterError(RuntimeError):
    pass


def _as_owner(argv: list[str]) -> list[str]:
    return ["runuser", "-u", RUN_AS, "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class PgCluster:
    """``with PgCluster() as pg: pg.url("db")``; :meth:`create_database` makes databases."""

    port: int = 0
    root: Path | None = None
    # False (tests): fsync off, the cluster is thrown away.  True (benchmarks): fsync on and
    # synchronous_commit off, what SQLite's WAL + synchronous=NORMAL promises (a crash of the
    # program loses nothing, a power cut the last commits).
    durable: bool = False
    _made_root: bool = field(default=False, repr=False)

    @property
    def data(self) -> Path:
        assert self.root is not None
        return self.root / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@[::1]:{self.port}/{database}"

    def start(self) -> PgCluster:
        initdb = BIN / "initdb"
        if not initdb.exists():
            raise ClusterError(
                f"{initdb} not found: install postgresql-15 and postgresql-15-postgis-3 "
                "(bash .ci/setup as root does)"
            )
        if self.root is None:
            self.root = Path(tempfile.mkdtemp(prefix="r197-pg-"))
            self._made_root = True
        self.root.chmod(0o755)
        if os.geteuid() == 0:
            user = pwd.getpwnam(RUN_AS)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self.port = self.port or free_port()
        run = subprocess.run(
            _as_owner([str(initdb), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                       "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if run.returncode != 0:
            raise ClusterError(f"initdb failed: {run.stderr.strip()[-2000:]}")
        # fsync off: a test cluster is thrown away; it changes durability, not behaviour.
        options = (
            f"-c listen_addresses='::1' -c port={self.port} "
            f"-c unix_socket_directories='{self.root}' -c synchronous_commit=off"
            " -c max_connections=200"
        )
        if not self.durable:
            options += " -c fsync=off -c full_page_writes=off"
        run = subprocess.run(
            _as_owner([str(BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.root / "log"),
                       "-o", options, "-w", "-t", "60", "start"]),
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        if run.returncode != 0:
            log = (self.root / "log").read_text(errors="replace")[-2000:]
            raise ClusterError(f"pg_ctl start failed: {run.stderr.strip()} {log}")
        return self

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.data / "postmaster.pid").exists():
            subprocess.run(
                _as_owner([str(BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]),
                capture_output=True, check=False,
            )  # fmt: skip
        if self._made_root:
            shutil.rmtree(self.root, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL statement as the ``postgres`` superuser (not from a running loop)."""
        import asyncio  # noqa: PLC0415

        import asyncpg  # noqa: PLC0415

        async def go() -> str:
            conn = await asyncpg.connect(self.url(database))
            try:
                return str(await conn.execute(sql))
            finally:
                await conn.close()

        return asyncio.run(go())

    def create_database(self, name: str) -> str:
        """A new empty database; its URL."""
        for _ in range(50):  # CREATE DATABASE fails while another one copies template1
            try:
                self.psql(f'CREATE DATABASE "{name}"')
                break
            except Exception as exc:
                if "is being accessed by other users" not in str(exc):
                    raise
                time.sleep(0.1)
        return self.url(name)

    def __enter__(self) -> PgCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_postgres_secrets(directory: Path, *, user: str = "city", database: str = "city") -> None:
    """docker-compose's postgres profile: the password of ``user`` in ``directory/password``
    (the postgis image's POSTGRES_PASSWORD_FILE) and the same in ``directory/pgpass`` (libpq's
    format, read by asyncpg through PGPASSFILE), so that no password is in the compose file,
    in ``docker inspect`` or in the platform's --db URL.  Kept when present; mode 0600 (both
    images read them as root: the server before it drops privileges)."""
    import secrets  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    password = directory / "password"
    if not password.exists():
        password.write_text(secrets.token_urlsafe(32))
    password.chmod(0o600)
    pgpass = directory / "pgpass"
    pgpass.write_text(f"*:*:{database}:{user}:{password.read_text().strip()}\n")
    pgpass.chmod(0o600)
