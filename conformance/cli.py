"""``testbed conformance``: run the conformance suite (a wrapper around pytest conformance/)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


def register(sub: Any, epilog: str) -> None:
    parser = sub.add_parser(
        "conformance",
        help="run the conformance suite against our stack or an implementation under test",
        description="Run the R197 conformance suite. Without --iut it tests the reference stack "
        "(started on [::1]); with --iut FILE (YAML: roles, PICS, PIXIT) it tests your "
        "implementation. Writes report.json, report.html, report.md (each with the "
        "per-requirement table) and junit.xml. Extra arguments go "
        "to pytest (for example -k MQTT).",
        epilog=epilog
        + "\nExample: testbed conformance --iut conformance/examples/mosquitto.yaml -k MQTT",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--iut", type=Path, help="YAML file describing the implementation under test"
    )
    parser.add_argument(
        "--report", type=Path, default=Path("conformance-report"), help="report directory"
    )
    parser.add_argument("pytest_args", nargs=argparse.REMAINDER, help="arguments passed to pytest")
    parser.set_defaults(func=run_conformance)


def run_conformance(args: argparse.Namespace, settings: Any) -> int:
    import pytest  # noqa: PLC0415

    argv = [str(HERE), "--r197-report", str(args.report), "-p", "no:cacheprovider"]
    if args.iut:
        if not args.iut.exists():
            print(f"testbed conformance: no such file {args.iut}", file=sys.stderr)
            return 2
        argv += ["--iut", str(args.iut)]
    argv += [a for a in args.pytest_args if a != "--"]
    return int(pytest.main(argv))
