"""The command lines of a secure `testbed up` city (testbed.parts.StackSecurity), and of an
open one, without starting anything; tests/testbed/test_city.py runs them."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from testbed.city_security import CitySecurity
from testbed.cli import build_parser
from testbed.parts import StackLayout
from testbed.up import broker_port, clear_data, layout_of, stack_security


def _layout(tmp_path: Path, *argv: str) -> StackLayout:
    args = build_parser().parse_args(["up", "--data-dir", str(tmp_path), *argv])
    return layout_of(args, tmp_path, "lab-password")


@pytest.mark.parametrize(("argv", "port"), [((), 8883), (("--insecure",), 1883)])
def test_the_broker_port_follows_the_mode_unless_given(argv: tuple[str, ...], port: int) -> None:
    """One --broker-port: 8883 (MQTT over TLS, IANA) by default, 1883 with --insecure."""
    parser = build_parser()
    assert broker_port(parser.parse_args(["up", *argv])) == port
    assert broker_port(parser.parse_args(["up", *argv, "--broker-port", "1999"])) == 1999


def test_a_secure_layout_passes_every_credential_and_no_password_in_argv(tmp_path: Path) -> None:
    """Platform: --auth-key and the allow-list (the gateway's and the dashboard's /notify plus
    --allow-endpoint); the dashboard: its own token;
    gateway: mqtts:// with the CA, both token files, OSCORE, its password in the environment
    (not in `ps`); RD: --oscore."""
    security = CitySecurity.at(tmp_path)
    security.prepare(["weather-0001"], ["parking-0001"])
    extra = "http://[::1]:9999/hook"
    layout = _layout(tmp_path, "--allow-endpoint", extra)
    layout = replace(layout, security=stack_security(security, [extra]))  # as run_up does
    creds = security.credentials
    platform = layout.platform().argv
    assert platform[platform.index("--auth-key") + 1] == str(creds.jwt_key_file)
    allowed = [platform[i + 1] for i, a in enumerate(platform) if a == "--allow-endpoint"]
    assert allowed == [
        f"http://[::1]:{layout.ports.gateway_http}/notify",
        f"http://[::1]:{layout.ports.dashboard}/notify",  # the dashboard's one subscription
        extra,
    ]
    dashboard = layout.dashboard_part().argv
    assert dashboard[dashboard.index("--token-file") + 1] == str(security.token_file("dashboard"))
    gateway = layout.gateway()
    argv = gateway.argv
    assert argv[argv.index("--broker") + 1] == f"mqtts://[::1]:{layout.ports.broker}"
    assert argv[argv.index("--broker-ca") + 1] == str(creds.ca_file)
    assert argv[argv.index("--platform-token-file") + 1] == str(security.token_file("gateway"))
    assert argv[argv.index("--notify-token-file") + 1] == str(creds.notify_token_file)
    assert argv[argv.index("--oscore") + 1] == str(creds.oscore_file)
    password = security.gateway_password()
    assert not any(password in a for a in argv)
    assert gateway.env["TESTBED_GATEWAY__BROKER_PASSWORD"] == password
    rd = layout.resource_directory().argv
    assert rd[rd.index("--oscore") + 1] == str(creds.oscore_file)


def test_an_open_layout_has_no_credentials(tmp_path: Path) -> None:
    """--insecure: plain mqtt://, the shared lab password, no token, key, CA or OSCORE."""
    layout = _layout(tmp_path, "--insecure")
    argv = [a for spec in layout.specs() for a in spec.argv]
    assert layout.broker_url.startswith("mqtt://")
    for flag in ("--auth-key", "--allow-endpoint", "--broker-ca", "--oscore"):
        assert flag not in argv
    assert "--broker-password=lab-password" in argv


def test_fresh_empties_the_city_but_keeps_its_credentials(tmp_path: Path) -> None:
    """--fresh deletes databases, queue, broker state and logs; security/ stays (same CA,
    passwords and OSCORE sequence numbers)."""
    security = CitySecurity.at(tmp_path)
    security.prepare(["weather-0001"], ["parking-0001"])
    ca = security.credentials.ca_file.read_bytes()
    for name in ("platform.db", "gateway-queue.db"):
        (tmp_path / name).write_text("x")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "gateway.log").write_text("x")
    clear_data(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["security"]
    assert security.credentials.ca_file.read_bytes() == ca
    clear_data(tmp_path / "missing")  # nothing to clear: no error


@pytest.mark.parametrize(("token", "shown"), [("good", "entities 6 |"), ("old", "token refused")])
async def test_the_summary_counts_entities_with_the_reader_token(token: str, shown: str) -> None:
    """The summary line reads the entity count with the reader token; a refused token (the key
    was rotated under a running platform) says so instead of "platform down"."""
    import httpx  # noqa: PLC0415

    from testbed.summary import Summary  # noqa: PLC0415

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/health":
            return httpx.Response(200, json={"forwarded": 1, "devicesRecent": 3})
        if request.headers.get("Authorization") != "Bearer good":
            return httpx.Response(401, headers={"WWW-Authenticate": 'Bearer realm="r197"'})
        return httpx.Response(200, json=[], headers={"NGSILD-Results-Count": "3"})

    summary = Summary(
        gateway_health="http://gw/health", platform_url="http://platform", devices=3, recent=10,
        platform_headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as client:
        line = await summary.line(client)
    assert shown in line, line
    assert "devices online 3/3" in line
