"""The ``testbed`` command: help, settings precedence, and a platform that keeps its data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from testbed.settings import load_settings
from tests.conftest import ROOT, PlatformProcess


def test_help_lists_every_program() -> None:
    """`testbed --help` explains the command and names its subcommands."""
    out = subprocess.run(
        [sys.executable, "-m", "testbed", "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0
    assert "platform" in out.stdout
    assert "TESTBED_" in out.stdout


def test_unknown_option_is_a_readable_error() -> None:
    """A wrong flag exits 2 with a usage line, not a traceback."""
    out = subprocess.run(
        [sys.executable, "-m", "testbed", "platform", "--prot", "1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 2
    assert "usage:" in out.stderr
    assert "Traceback" not in out.stderr


def test_settings_file_then_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TOML file sets values; TESTBED_* variables win over it."""
    cfg = tmp_path / "city.toml"
    cfg.write_text('[platform]\nport = 9001\nhost = "::1"\n')
    assert load_settings(cfg).platform.port == 9001
    monkeypatch.setenv("TESTBED_PLATFORM__PORT", "9002")
    settings = load_settings(cfg)
    assert settings.platform.port == 9002
    assert settings.platform.host == "::1"


def test_platform_keeps_entities_across_a_restart(tmp_path: Path) -> None:
    """With --db FILE, entities created before a restart are served after it."""
    proc = PlatformProcess(db=str(tmp_path / "city.db"))
    proc.start()
    try:
        r = httpx.post(
            proc.api + "/entities", json={"id": "urn:ngsi-ld:Thing:1", "type": "Thing", "a": 1}
        )
        assert r.status_code == 201
    finally:
        proc.stop()
    proc.start()
    try:
        r = httpx.get(proc.api + "/entities/urn:ngsi-ld:Thing:1", params={"options": "keyValues"})
        assert r.status_code == 200
        assert r.json()["a"] == 1
    finally:
        proc.stop()


def test_platform_writes_structured_access_logs() -> None:
    """With -vv every request is one key=value line: method, path, status, duration, tenant."""
    proc = PlatformProcess(verbose=2)
    proc.start()
    try:
        httpx.get(proc.api + "/entities/urn:ngsi-ld:Nothing:1", headers={"NGSILD-Tenant": "t1"})
    finally:
        out = proc.stop()
    line = next(
        x for x in out.splitlines() if "path=/ngsi-ld/v1/entities/urn:ngsi-ld:Nothing:1" in x
    )
    assert "method=GET" in line
    assert "status=404" in line
    assert "tenant=t1" in line
    assert "ms=" in line


def test_bench_runs_the_benchmark_suite(tmp_path: Path) -> None:
    """`testbed bench ...` is `python -m benchmarks ...`: options pass through, figures land."""
    out = subprocess.run(
        [sys.executable, "-m", "testbed", "bench", "--quick", "--only", "platform",
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    (written,) = tmp_path.glob("bench-quick-*.json")
    result = json.loads(written.read_text())
    assert result["platform"]["upsert_updates_per_s"]["median"] > 0
    wrong = subprocess.run(
        [sys.executable, "-m", "testbed", "bench", "--quik"],
        cwd=ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert wrong.returncode == 2
    assert "--quick" in wrong.stderr  # the suite's own usage line names its options


def test_platform_serves_with_its_gc_tuning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The platform program freezes its startup objects and collects young garbage less often."""
    import gc  # noqa: PLC0415

    import uvicorn  # noqa: PLC0415

    from testbed import cli  # noqa: PLC0415

    seen: dict[str, object] = {}

    def fake_run(app: object, **kwargs: object) -> None:
        seen["threshold"] = gc.get_threshold()
        seen["frozen"] = gc.get_freeze_count()

    before = gc.get_threshold()
    monkeypatch.setattr(uvicorn, "run", fake_run)
    try:
        assert cli.main(["platform", "--port", "8000", "--db", str(tmp_path / "p.db")]) == 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
    assert seen["threshold"] == (cli.YOUNG_THRESHOLD, 10, 10)
    assert isinstance(seen["frozen"], int)
    assert seen["frozen"] > 10_000, "startup objects were not frozen"


def test_gateway_event_loop_choice() -> None:
    """--loop auto takes uvloop where installed (as uvicorn does); --loop asyncio the standard."""
    import asyncio  # noqa: PLC0415

    import uvloop  # noqa: PLC0415

    from testbed.gateway_cmd import new_event_loop  # noqa: PLC0415

    for choice, kind in (("auto", uvloop.Loop), ("uvloop", uvloop.Loop)):
        loop = new_event_loop(choice)
        try:
            assert isinstance(loop, kind), f"--loop {choice} gave {type(loop).__name__}"
        finally:
            loop.close()
    loop = new_event_loop("asyncio")
    try:
        assert not isinstance(loop, uvloop.Loop)
        assert isinstance(loop, asyncio.BaseEventLoop)
    finally:
        loop.close()


def test_gateway_settings_file_can_turn_parts_off(tmp_path: Path) -> None:
    """TOML has no null: "off" in the settings file turns the broker, RD or CoAP ingest off,
    as --broker off / --rd off do; flags still win over the file."""
    from testbed.cli import build_parser  # noqa: PLC0415
    from testbed.gateway_cmd import gateway_config  # noqa: PLC0415

    path = tmp_path / "gw.toml"
    path.write_text(
        '[gateway]\nbroker_url = "off"\nrd_url = "off"\ncoap_host = "off"\n'
        'client_id = "r197-gateway-2"\n'
    )
    settings = load_settings(path)
    config = gateway_config(build_parser().parse_args(["gateway"]), settings)
    assert (config.broker_url, config.rd_url, config.coap_host) == (None, None, None)
    assert config.client_id == "r197-gateway-2"
    args = build_parser().parse_args(
        ["gateway", "--broker", "mqtt://[::1]:1884", "--client-id", "gw-9"]
    )
    config = gateway_config(args, settings)
    assert config.broker_url == "mqtt://[::1]:1884"
    assert config.client_id == "gw-9"


@pytest.mark.parametrize("password", ["-starts-with-a-dash", "plain_Secret-1", "--x"])
def test_the_city_gateway_gets_its_generated_password_whatever_it_begins_with(
    tmp_path: Path, password: str
) -> None:
    """`testbed up` generates the gateway's broker password; one beginning with "-" was taken
    for an option, and the gateway refused to start (about once in 64 starts)."""
    from testbed.cli import build_parser  # noqa: PLC0415
    from testbed.parts import StackLayout  # noqa: PLC0415
    from testbed.up import gateway_argv  # noqa: PLC0415

    args = build_parser().parse_args(gateway_argv(StackLayout(data=tmp_path), password))
    assert args.broker_password == password
    assert args.broker == "mqtt://[::1]:1883"


@pytest.mark.parametrize("remote", [False, True])
def test_the_city_platform_is_offline_unless_remote_contexts_are_asked_for(
    tmp_path: Path, remote: bool
) -> None:
    """`testbed up` starts the platform with the shipped @contexts preloaded and remote @context
    fetching off (the city works offline); `--remote-contexts` turns fetching on."""
    from testbed.cli import build_parser  # noqa: PLC0415
    from testbed.parts import SHIPPED_CONTEXTS  # noqa: PLC0415
    from testbed.up import layout_of  # noqa: PLC0415

    argv = ["up", "--data-dir", str(tmp_path), *(["--remote-contexts"] if remote else [])]
    args = build_parser().parse_args(argv)
    spec = layout_of(args, tmp_path, "secret").platform()
    at = spec.argv.index("--context-dir")
    assert spec.argv[at + 1] == str(SHIPPED_CONTEXTS)
    assert (SHIPPED_CONTEXTS / "ngsi-ld-core-context-v1.8.jsonld").is_file()
    assert ("--no-remote-contexts" in spec.argv) is not remote
