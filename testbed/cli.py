"""``testbed``: one command with a subcommand per program."""

from __future__ import annotations

import argparse
import gc
import importlib.util
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from conformance import cli as conformance_cli
from conformance import matrix
from testbed import (
    dashboard_cmd,
    devices_cmd,
    gateway_cmd,
    influx_cmd,
    rd_cmd,
    secrets_cmd,
    token_cmd,
    up,
)
from testbed.processes import port_arg
from testbed.settings import Settings, load_settings

log = logging.getLogger("testbed")

EPILOG = """\
Settings come from defaults, then --config FILE (TOML), then TESTBED_* environment variables
(e.g. TESTBED_PLATFORM__PORT=9000), then the command-line flags.
"""


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    if verbosity < 2:
        logging.getLogger("city_platform.access").setLevel(logging.WARNING)
        logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request otherwise


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="testbed",
        description="r197-testbed: an IoT / smart-city interoperability testbed "
        "(NGSI-LD platform, devices, gateway, conformance suite), IPv6 first.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", type=Path, help="TOML configuration file")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v for INFO (connections, startup), -vv for DEBUG and access logs",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    plat = sub.add_parser(
        "platform",
        help="run the NGSI-LD smart-city platform (HTTP API under /ngsi-ld/v1)",
        description="Run the NGSI-LD context broker: entities, batch operations, queries, "
        "temporal history, subscriptions. Listens on IPv6 '::' by default (which also accepts "
        "IPv4 where the OS maps it). OpenAPI docs at /docs.",
        epilog=EPILOG + "\nExample: testbed platform --host ::1 --port 8000 --db :memory:",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    plat.add_argument("--host", help="address to listen on (default '::'; '::1' for loopback only)")
    plat.add_argument("--port", type=port_arg, help="TCP port (default 8000)")
    plat.add_argument(
        "--db",
        help="SQLite file, ':memory:', or postgresql://user:password@host:port/database "
        "(PostgreSQL + PostGIS, docs/platform.md) (default: a SQLite file under the data dir)",
    )
    plat.add_argument(
        "--no-remote-contexts",
        action="store_true",
        help="never fetch @context URLs over the network (shipped ones only)",
    )
    plat.add_argument(
        "--context-dir",
        metavar="DIR",
        help="a directory of *.jsonld @context files resolved locally: NAME.jsonld is served at "
        "/ngsi-ld/contexts/NAME.jsonld and stands for that path on any host, and for the URLs "
        "its top-level 'url' member lists (never fetched)",
    )
    plat.add_argument(
        "--auth-key",
        metavar="FILE",
        help="require 'Authorization: Bearer <token>' on the API, tokens signed with the HS256 "
        "key in FILE (issue them with `testbed token`); /health, /docs and /ngsi-ld/contexts/ "
        "stay open (default: no authentication)",
    )
    plat.add_argument(
        "--allow-endpoint",
        action="append",
        metavar="URLPREFIX",
        help="allow notification endpoints, csource registration endpoints and remote @context "
        "URLs under this prefix only (repeatable; against SSRF; default: any URL)",
    )
    influx_cmd.add_platform_flags(plat)
    plat.set_defaults(func=run_platform)
    gateway_cmd.register(sub, EPILOG)
    devices_cmd.register(sub, EPILOG)
    up.register(sub, EPILOG)
    token_cmd.register(sub, EPILOG)
    secrets_cmd.register(sub, EPILOG)
    rd_cmd.register(sub, EPILOG)
    dashboard_cmd.register(sub, EPILOG)
    conformance_cli.register(sub, EPILOG)
    matrix.register(sub, EPILOG)
    sub.add_parser(
        "bench",
        add_help=False,  # --help and every other option go to the benchmark suite
        help="run the benchmark suite, as `python -m benchmarks` (from a clone of the repository)",
    ).set_defaults(func=run_bench)
    return parser


def run_bench(args: argparse.Namespace, settings: Settings) -> int:
    """``testbed bench [options]`` is ``python -m benchmarks [options]``: this process becomes it.

    Not imported: no package of ours may import the benchmarks (DESIGN.md section 2,
    tests/test_import_rules.py).  ``find_spec`` of a top-level name only locates it."""
    spec = importlib.util.find_spec("benchmarks")
    if spec is None or spec.origin is None:
        print(
            "testbed bench: the benchmark suite lives in the repository's benchmarks/ directory, "
            "which is not installed with the package; run it from a clone: "
            "python -m benchmarks --help",
            file=sys.stderr,
        )
        return 2
    # Where this process found it, the suite finds it too, whatever the working directory.
    env = dict(os.environ)
    found = str(Path(spec.origin).parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (found, env.get("PYTHONPATH")) if p)
    sys.stdout.flush()
    sys.stderr.flush()
    command = [sys.executable, "-m", "benchmarks", *args.bench_args]
    # exec, not a child: signals, the exit status and the suite's cleanup are its own.
    return os.execve(sys.executable, command, env)  # noqa: S606  # a fixed program, no shell


YOUNG_THRESHOLD = 50_000  # allocations between collections of the youngest generation


def tune_gc_for_serving() -> None:
    """Collect garbage the way a server holding short-lived JSON wants it.

    The platform's garbage is decoded JSON, freed by reference counts as soon as a request is
    done. But a batch upsert keeps tens of thousands of such objects alive across its awaits, and
    at CPython's default threshold (700 allocations) they survive into the oldest generation,
    whose collections walk all of them: 14 of 40 ms each in five seconds of benchmark load,
    about a fifth of the platform's CPU. Everything built at startup is frozen out of the
    collector's walks (``gc.freeze``); the youngest generation is collected after 50,000
    allocations, by when a batch's objects are mostly gone. Cycles are still collected.
    (10,000 until batches of 2,000 entities: then a collection came every 1,000 readings and
    walked the batch's live documents, 1.1 CPU-us per reading in process; at 50,000 none came
    in 60,000 readings with 1,000 devices.)
    """
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, 10, 10)


def run_platform(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn  # noqa: PLC0415  # heavy: imported only for the programs that serve HTTP

    from city_platform.api.app import create_app  # noqa: PLC0415
    from city_platform.errors import PlatformError  # noqa: PLC0415
    from city_platform.storage import choose  # noqa: PLC0415

    cfg = settings.platform
    host = args.host or cfg.host
    port = args.port if args.port is not None else cfg.port
    db = args.db or cfg.db
    context_dir = args.context_dir or cfg.context_dir
    key_file = args.auth_key or cfg.auth_key_file
    try:
        key = token_cmd.read_key(Path(key_file)) if key_file else None
    except token_cmd.KeyFileError as exc:  # missing, empty or short: say so, exit 2
        print(f"platform: --auth-key: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        # --db postgresql://... is the PostgreSQL backend (storage/choose.py), else SQLite.
        storage = influx_cmd.wrap(choose.backend_for(db), args, cfg, db)
        problem = choose.check(db)
        if problem is not None:  # unreachable, no PostGIS, a newer schema: one line, exit 2
            print(f"platform: --db: {problem}", file=sys.stderr, flush=True)
            return 2
    except influx_cmd.InfluxFlagError as exc:  # an unreadable token file: say so, exit 2
        print(f"platform: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        app = create_app(
            storage,
            allow_remote_contexts=cfg.allow_remote_contexts and not args.no_remote_contexts,
            context_dir=Path(context_dir) if context_dir else None,
            auth_key=key,
            allow_endpoints=args.allow_endpoint or cfg.allow_endpoints,
        )
    except ValueError as exc:  # an --allow-endpoint prefix that is not a URL
        print(f"platform: {exc}", file=sys.stderr, flush=True)
        return 2
    except PlatformError as exc:  # a bad --context-dir: say which file, no traceback
        print(f"platform: {exc}", file=sys.stderr, flush=True)
        return 2
    shown = f"[{host}]" if ":" in host else host
    print(
        f"platform: NGSI-LD API at http://{shown}:{port}/ngsi-ld/v1 (docs at /docs), "
        f"storage {choose.shown(db)}",
        file=sys.stderr,
        flush=True,
    )
    tune_gc_for_serving()
    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if "bench" in argv:  # what follows it are the benchmark suite's options
        args, extra = parser.parse_known_args(argv)
        if args.command != "bench" and extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.bench_args = extra
    else:
        args = parser.parse_args(argv)
    _setup_logging(args.verbose)
    try:
        settings = load_settings(args.config)
    except (OSError, ValueError, ValidationError) as exc:
        parser.error(f"cannot read settings: {exc}")
    result: int = args.func(args, settings)
    return result


if __name__ == "__main__":
    sys.exit(main())
