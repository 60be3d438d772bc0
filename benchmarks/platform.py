"""Benchmark of the NGSI-LD platform alone, through its real HTTP API on [::1].

Measures, against a ``testbed platform`` process with a SQLite file database (``--backend
postgresql``: a PostgreSQL 15 + PostGIS database on a cluster of its own, testbed/pgcluster.py,
fsync on; ``--backend both`` runs the two one after the other):

1. batch-upsert throughput in attribute updates per second (batches of 100 entities x 5
   Properties, each with ``observedAt`` so that every update is also a history row);
2. single-entity GET latency p50/p99 with ``--entities`` entities stored;
3. ``lastN=100`` temporal query latency with ``--history`` history rows stored.

The stored data for 2 and 3 is seeded straight into the database before the server starts (it is
the setup, not the measurement); every measured operation goes through HTTP.

    python -m benchmarks.platform            # full: 50k updates, 100k entities, 1M history rows
    python -m benchmarks.platform --quick    # about a tenth of that
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from city_platform.broker import history_rows
from city_platform.storage.base import Storage
from city_platform.storage.choose import backend_for
from testbed.parts import platform_spec
from testbed.processes import ManagedProcess, free_port

NS = "https://uri.etsi.org/ngsi-ld/default-context/"
PROPS = ("p0", "p1", "p2", "p3", "p4")
HOT_ATTR_ROWS = 1000  # history rows per hot entity (lastN targets)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def stored_entity(n: int, now: str) -> dict[str, Any]:
    attrs = {
        NS + p: [
            {
                "type": "Property",
                "value": n + i,
                "unitCode": "CEL",
                "observedAt": now,
                "createdAt": now,
                "modifiedAt": now,
            }
        ]
        for i, p in enumerate(PROPS)
    }
    return {
        "id": f"urn:ngsi-ld:Bench:{n}",
        "type": [NS + "Bench"],
        "createdAt": now,
        "modifiedAt": now,
        "attrs": attrs,
    }


async def seed(db: str | Path, entities: int, history: int) -> int:
    """Store ``entities`` entities and about ``history`` history rows; returns the hot count."""
    base = datetime(2026, 1, 1, tzinfo=UTC)
    now = iso(base)
    per_entity = len(PROPS)
    rest = max(history - entities * per_entity, 0)
    hot = max(min(rest // HOT_ATTR_ROWS, entities), 1)
    storage: Storage
    async with backend_for(str(db)) as storage:
        chunk = 2000
        for start in range(0, entities, chunk):
            batch = [stored_entity(n, now) for n in range(start, min(start + chunk, entities))]
            rows = [r for e in batch for r in history_rows(e["id"], e["attrs"], now)]
            await storage.write_entities("", batch, rows)
            if (start // chunk) % 10 == 9 or start + chunk >= entities:
                log(f"  seeded {start + len(batch):,} / {entities:,} entities")
        for n in range(hot):
            entity = stored_entity(n, now)
            extra = {
                NS + "p0": [
                    {
                        "type": "Property",
                        "value": k,
                        "observedAt": iso(base + timedelta(seconds=k + 1)),
                    }
                    for k in range(HOT_ATTR_ROWS)
                ]
            }
            await storage.write_entities("", [entity], history_rows(entity["id"], extra, now))
            if n % 100 == 0:
                log(f"  seeded history of {n + 1:,} / {hot:,} hot entities")
    return hot


class Server:
    """The platform on a free port of [::1], on the database ``db``."""

    def __init__(self, db: str, log_path: Path) -> None:
        self.port = free_port()
        self.db = db
        self.api = f"http://[::1]:{self.port}/ngsi-ld/v1"
        # A seeded database of a million history rows takes a while to open.
        spec = replace(platform_spec(port=self.port, db=db, verbose=0), start_timeout=60)
        self.process = ManagedProcess(spec, log_path=log_path)

    def __enter__(self) -> Server:
        self.process.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.stop()


def upsert_batches(updates: int, entities: int) -> Iterator[list[dict[str, Any]]]:
    """Batches of 100 entities x 5 Properties with fresh observedAt values."""
    start = datetime(2026, 2, 1, tzinfo=UTC)
    per_batch = 100
    sent = 0
    k = 0
    while sent < updates:
        when = iso(start + timedelta(milliseconds=k))
        batch = [
            {
                "id": f"urn:ngsi-ld:Bench:{(k * per_batch + i) % entities}",
                "type": "Bench",
                **{
                    p: {"type": "Property", "value": k + j, "unitCode": "CEL", "observedAt": when}
                    for j, p in enumerate(PROPS)
                },
            }
            for i in range(per_batch)
        ]
        sent += per_batch * len(PROPS)
        k += 1
        yield batch


async def bench_upsert(api: str, updates: int, entities: int, clients: int) -> dict[str, float]:
    batches = list(upsert_batches(updates, entities))
    queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
    for b in batches:
        queue.put_nowait(b)

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            batch = queue.get_nowait()
            r = await client.post(
                "/entityOperations/upsert", params={"options": "update"}, json=batch
            )
            if r.status_code not in (201, 204):
                raise RuntimeError(f"upsert answered {r.status_code}: {r.text[:200]}")

    async with httpx.AsyncClient(base_url=api, timeout=60) as client:
        began = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        elapsed = time.perf_counter() - began
    done = len(batches) * 100 * len(PROPS)
    return {"updates": done, "seconds": elapsed, "updates_per_s": done / elapsed}


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "n": len(ordered),
        "p50_ms": q[49] * 1000,
        "p99_ms": q[98] * 1000,
        "max_ms": ordered[-1] * 1000,
    }


def bench_latency(api: str, paths: list[str], params: dict[str, str]) -> dict[str, float]:
    samples = []
    with httpx.Client(base_url=api, timeout=30) as client:
        for path in paths[:20]:  # warm-up: connection, caches
            client.get(path, params=params)
        for path in paths:
            began = time.perf_counter()
            r = client.get(path, params=params)
            samples.append(time.perf_counter() - began)
            if r.status_code != 200:
                raise RuntimeError(f"GET {path} answered {r.status_code}: {r.text[:200]}")
    return percentiles(samples)


async def pg_size(url: str) -> int:
    import asyncpg  # noqa: PLC0415

    conn = await asyncpg.connect(url)
    try:
        return int(await conn.fetchval("SELECT pg_database_size(current_database())"))
    finally:
        await conn.close()


def run(args: argparse.Namespace) -> dict[str, Any]:
    if getattr(args, "backend", "sqlite") == "postgresql":
        from testbed.pgcluster import PgCluster  # noqa: PLC0415

        with PgCluster(durable=True) as pg:
            url = pg.create_database("bench")
            pg.psql("CREATE EXTENSION postgis", "bench")
            result = run_on(args, url, lambda: asyncio.run(pg_size(url)))
        return {**result, "backend": "postgresql 15 + postgis"}
    return {**run_on(args, None, None), "backend": "sqlite"}


def run_on(
    args: argparse.Namespace, url: str | None, size_of: Callable[[], int] | None
) -> dict[str, Any]:
    rng = random.Random(197)
    with tempfile.TemporaryDirectory(prefix="r197-bench-") as tmp:
        db = url or str(Path(tmp) / "platform.db")
        log(f"seeding {args.entities:,} entities and ~{args.history:,} history rows into {db}")
        hot = asyncio.run(seed(db, args.entities, args.history))
        with Server(db, Path(tmp) / "platform.log") as server:
            rounds = max(1, getattr(args, "repeats", 1))
            upserts, gets, last_ns = [], [], []
            for n in range(rounds):
                log(f"batch upsert: {args.updates:,} attribute updates, {args.clients} clients "
                    f"(run {n + 1} of {rounds})")  # fmt: skip
                upserts.append(
                    asyncio.run(bench_upsert(server.api, args.updates, args.entities, args.clients))
                )
                per_round = max(args.samples // rounds, 50)
                log(f"GET /entities/{{id}}: {per_round:,} requests")
                ids = [
                    f"/entities/urn:ngsi-ld:Bench:{rng.randrange(args.entities)}"
                    for _ in range(per_round)
                ]
                gets.append(bench_latency(server.api, ids, {}))
                log(
                    f"GET /temporal/entities/{{id}}?lastN=100: {max(per_round // 4, 50):,} requests"
                )
                hot_ids = [
                    f"/temporal/entities/urn:ngsi-ld:Bench:{rng.randrange(hot)}"
                    for _ in range(max(per_round // 4, 50))
                ]
                last_ns.append(bench_latency(server.api, hot_ids, {"attrs": "p0", "lastN": "100"}))
            upsert = sorted(upserts, key=lambda u: u["updates_per_s"])[len(upserts) // 2]
            get = sorted(gets, key=lambda g: g["p99_ms"])[len(gets) // 2]
            last_n = sorted(last_ns, key=lambda g: g["p99_ms"])[len(last_ns) // 2]
            if size_of is not None:
                size = size_of()
            else:
                size = Path(db).stat().st_size + sum(
                    p.stat().st_size for p in Path(tmp).glob("platform.db-*")
                )
    return {
        "machine": f"{host.machine()}, {os.cpu_count()} CPUs, Python {host.python_version()}",
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "entities": args.entities,
        "history_rows": args.history,
        "db_bytes": size,
        "batch_upsert": upsert,
        "get_entity": get,
        "temporal_last_n_100": last_n,
        # Every round, for medians with min and max (benchmarks/__main__.py).
        "runs": {
            "upsert_updates_per_s": [u["updates_per_s"] for u in upserts],
            "get_p50_ms": [g["p50_ms"] for g in gets],
            "get_p99_ms": [g["p99_ms"] for g in gets],
            "last_n_p50_ms": [g["p50_ms"] for g in last_ns],
            "last_n_p99_ms": [g["p99_ms"] for g in last_ns],
        },
    }


def table(result: dict[str, Any]) -> str:
    up, get, tn = result["batch_upsert"], result["get_entity"], result["temporal_last_n_100"]
    rows = [
        (
            "batch upsert (100 entities x 5 Properties)",
            f"{up['updates_per_s']:,.0f} attribute updates/s "
            f"({up['updates']:,} in {up['seconds']:.1f} s)",
        ),
        (
            f"GET /entities/{{id}}, {result['entities']:,} entities stored",
            f"p50 {get['p50_ms']:.2f} ms, p99 {get['p99_ms']:.2f} ms",
        ),
        (
            f"temporal lastN=100, {result['history_rows']:,} history rows",
            f"p50 {tn['p50_ms']:.2f} ms, p99 {tn['p99_ms']:.2f} ms",
        ),
    ]
    backend = result.get("backend", "sqlite")
    head = [f"Platform benchmark, {backend} ({result['machine']}, {result['date']})", ""]
    return "\n".join(
        [*head, "| measure | figure |", "|---|---|"] + [f"| {a} | {b} |" for a, b in rows]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.platform",
        description="Measure the NGSI-LD platform through its HTTP API on [::1] "
        "(batch-upsert throughput, GET latency, temporal lastN latency).",
    )
    parser.add_argument("--quick", action="store_true", help="about a tenth of the full sizes")
    parser.add_argument("--updates", type=int, help="attribute updates to upsert (full: 50,000)")
    parser.add_argument("--entities", type=int, help="entities stored (full: 100,000)")
    parser.add_argument("--history", type=int, help="history rows stored (full: 1,000,000)")
    parser.add_argument("--samples", type=int, help="GET requests to time (full: 5,000)")
    parser.add_argument("--clients", type=int, default=4, help="concurrent upsert clients")
    parser.add_argument("--repeats", type=int, default=1, help="rounds of each measurement")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--backend", choices=["sqlite", "postgresql", "both"], default="sqlite",
        help="the platform's storage (postgresql: a cluster of its own, postgresql-15 needed)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    scale = 10 if args.quick else 1
    args.updates = args.updates or 50_000 // scale
    args.entities = args.entities or 100_000 // scale
    args.history = args.history or 1_000_000 // scale
    args.samples = args.samples or 5_000 // scale
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    results = []
    for backend in backends:
        args.backend = backend
        results.append(run(args))
        print(table(results[-1]))
        print()
    if args.json:
        args.json.write_text(json.dumps(results[0] if len(results) == 1 else results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
