"""The platform's InfluxDB flags (``testbed platform --influx URL ...``) and the sink they build."""

from __future__ import annotations

import argparse
from pathlib import Path

from city_platform.influx.outbox import outbox_path
from city_platform.influx.sink import InfluxConfig, InfluxSink
from city_platform.influx.storage import InfluxSinkStorage
from city_platform.storage.base import Storage
from testbed.secret_file import EmptySecretError, read_secret
from testbed.settings import PlatformSettings, default_db_path


class InfluxFlagError(ValueError):
    """The InfluxDB flags do not make a sink (a token file missing or empty)."""


def add_platform_flags(plat: argparse.ArgumentParser) -> None:
    group = plat.add_argument_group(
        "InfluxDB sink",
        "every stored Property instance is also written to InfluxDB v2 (or anything taking its "
        "/api/v2/write, e.g. VictoriaMetrics) through a durable outbox; see docs/platform.md",
    )
    group.add_argument(
        "--influx", metavar="URL", help="the InfluxDB server, e.g. http://[::1]:8086"
    )
    group.add_argument("--influx-org", metavar="ORG", help="organisation (default r197)")
    group.add_argument("--influx-bucket", metavar="BUCKET", help="bucket (default city)")
    group.add_argument(
        "--influx-token-file", metavar="FILE", help="a file holding the API token (write scope)"
    )
    group.add_argument(
        "--influx-outbox",
        metavar="FILE",
        help="the outbox's SQLite file (default: beside --db, DB.influx-outbox)",
    )


def wrap(storage: Storage, args: argparse.Namespace, cfg: PlatformSettings, db: str) -> Storage:
    """``storage`` with the sink when --influx (or ``platform.influx``) is given, else itself."""
    url = args.influx or cfg.influx
    if not url:
        return storage
    token_file = args.influx_token_file or cfg.influx_token_file
    token = ""
    if token_file:
        try:
            token = read_secret(token_file)
        except (OSError, EmptySecretError) as exc:
            raise InfluxFlagError(f"--influx-token-file: {exc}") from exc
    config = InfluxConfig(
        url=url,
        org=args.influx_org or cfg.influx_org,
        bucket=args.influx_bucket or cfg.influx_bucket,
        token=token,
        outbox=args.influx_outbox or cfg.influx_outbox or outbox_path(db, default_db_path().parent),
    )
    return InfluxSinkStorage(storage, InfluxSink(config))


# The files docker-compose's influx profile reads (docs/platform.md "Time series in InfluxDB").
INFLUX_SECRETS = ("token", "password", "grafana-password")


def write_influx_secrets(directory: Path) -> list[Path]:
    """Make the InfluxDB operator token, its admin password and Grafana's admin password in
    ``directory`` (kept when present).  Mode 0644 in a directory of its own: InfluxDB (uid 1000)
    and Grafana (uid 472) read them as their own users, and only the services that mount this
    directory (influxdb, grafana, platform) see it."""
    import secrets  # noqa: PLC0415

    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    made = []
    for name in INFLUX_SECRETS:
        path = directory / name
        if not path.exists():
            path.write_text(secrets.token_urlsafe(32))
            made.append(path)
        path.chmod(0o644)
    return made
