"""`testbed secrets init|show|rotate` and the container broker files it writes (real Mosquitto)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509

from city_platform.auth import TokenInvalid, verify
from testbed.city_security import TOKENS, CitySecurity
from tests.conftest import ROOT, free_port

SCENARIO = """
seed = 3
[[groups]]
kind = "weather"
count = 2
protocol = "mqtt"
format = "senml-json"
interval = 5
[[groups]]
kind = "parking"
count = 2
protocol = "coap-push"
format = "senml-cbor"
interval = 5
"""


def secrets(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "testbed", "secrets", *args],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


@pytest.fixture
def scenario(tmp_path: Path) -> Path:
    path = tmp_path / "s.toml"
    path.write_text(SCENARIO)
    return path


def test_init_makes_accounts_keys_and_tokens_and_show_prints_no_secret(
    tmp_path: Path, scenario: Path
) -> None:
    """init: distinct MQTT passwords for gateway, observers and MQTT devices, OSCORE keys for the
    CoAP devices, tokens that the city's key verifies with their scopes; show names every file
    and account but prints no password, key or token."""
    data = tmp_path / "city"
    done = secrets("init", "--data-dir", str(data), "--scenario", str(scenario))
    assert done.returncode == 0, done.stderr
    security = CitySecurity.at(data)
    creds = security.credentials
    passwords = json.loads(creds.passwords_file.read_text())
    assert {"gateway", "observer", "observer-30", "weather-0001", "weather-0002"} <= set(passwords)
    assert "parking-0001" not in passwords  # a CoAP device has no MQTT account
    assert len(set(passwords.values())) == len(passwords)
    assert set(json.loads(creds.oscore_file.read_text())) == {"parking-0001", "parking-0002"}
    key = creds.jwt_key()
    for name, (scopes, tenants) in TOKENS.items():
        principal = verify(key, security.token(name))
        assert set(scopes) <= set(principal.scopes), name
        assert set(tenants) == set(principal.tenants), name
        assert security.token_file(name).stat().st_mode & 0o077 == 0
    shown = secrets("show", "--data-dir", str(data))
    assert shown.returncode == 0, shown.stderr
    assert str(creds.ca_file) in shown.stdout
    assert "weather-0001" in shown.stdout
    assert "parking-0001" in shown.stdout
    secret_texts = [*passwords.values(), key.decode(), security.token("admin")]
    secret_texts += [creds.ca_key_file.read_text().splitlines()[1], creds.notify_token()]
    for secret in secret_texts:
        assert secret not in shown.stdout


def test_rotate_api_revokes_every_token_and_init_mints_new_ones(
    tmp_path: Path, scenario: Path
) -> None:
    """rotate api forgets the token key: the next init makes a new one; old tokens fail."""
    data = tmp_path / "city"
    assert secrets("init", "--data-dir", str(data), "--scenario", str(scenario)).returncode == 0
    security = CitySecurity.at(data)
    old_key, old_token = security.credentials.jwt_key(), security.token("reader")
    passwords = security.credentials.mqtt_passwords()
    done = secrets("rotate", "api", "--data-dir", str(data))
    assert done.returncode == 0, done.stderr
    assert "restart: the platform and the gateway" in done.stdout
    assert secrets("init", "--data-dir", str(data), "--scenario", str(scenario)).returncode == 0
    new_key = security.credentials.jwt_key()
    assert new_key != old_key
    verify(new_key, security.token("reader"))
    with pytest.raises(TokenInvalid):
        verify(new_key, old_token)
    assert security.credentials.mqtt_passwords() == passwords  # only the named secret changed
    assert secrets("rotate", "nonsense", "--data-dir", str(data)).returncode == 2


def test_a_guest_device_gets_accounts_that_every_later_start_keeps(
    tmp_path: Path, scenario: Path
) -> None:
    """init --mqtt-device / --coap-device provision a plugfest guest's device: `show --reveal`
    prints its password and OSCORE keys (plain `show` never does), and a later start with the
    scenario alone (CitySecurity.prepare, as `testbed up`) still gives the broker its account."""
    data = tmp_path / "city"
    argv = ["init", "--data-dir", str(data), "--scenario", str(scenario)]
    done = secrets(*argv, "--mqtt-device", "guest-1", "--coap-device", "guest-2")
    assert done.returncode == 0, done.stderr
    creds = CitySecurity.at(data).credentials
    password = creds.mqtt_password("guest-1")
    keys = creds.oscore()["guest-2"]
    revealed = secrets("show", "--data-dir", str(data), "--reveal", "guest-1")
    assert revealed.returncode == 0, revealed.stderr
    assert f"password {password} " in revealed.stdout
    revealed = secrets("show", "--data-dir", str(data), "--reveal", "guest-2")
    assert f"master secret {keys.master_secret.hex()}," in revealed.stdout
    assert secrets("show", "--data-dir", str(data), "--reveal", "nobody").returncode == 1
    assert password not in secrets("show", "--data-dir", str(data)).stdout
    accounts = CitySecurity.at(data).prepare(["weather-0001"], ["parking-0001"])
    assert accounts["guest-1"] == password
    assert {"gateway", "observer", "weather-0001", "weather-0002"} <= set(accounts)


def test_init_reissues_the_broker_certificate_for_an_added_host(
    tmp_path: Path, scenario: Path
) -> None:
    """--broker-host mosquitto (docker-compose) puts the name into the certificate's SAN, also
    when a certificate without it exists already."""
    data = tmp_path / "city"
    assert secrets("init", "--data-dir", str(data), "--scenario", str(scenario)).returncode == 0
    argv = ["init", "--data-dir", str(data), "--scenario", str(scenario)]
    assert secrets(*argv, "--broker-host", "mosquitto").returncode == 0
    cert = x509.load_pem_x509_certificate((data / "security" / "broker.pem").read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mosquitto" in san.get_values_for_type(x509.DNSName)
    assert "localhost" in san.get_values_for_type(x509.DNSName)


def test_the_container_broker_config_runs_tls_only_with_hashed_passwords(
    tmp_path: Path, scenario: Path
) -> None:
    """The files init writes for eclipse-mosquitto run a real Mosquitto: TLS only, the
    observer's password (hashed here, PBKDF2-SHA512 "$7$") accepted, a wrong one and anonymous
    refused (MQTT 3.1.1 CONNACK 5), no plain MQTT; key and passwd 0600 for the broker's user."""
    from testbed.brokers import TlsReady, find_mosquitto  # noqa: PLC0415

    mosquitto = find_mosquitto()
    assert mosquitto is not None, "the CI installs Mosquitto (.ci/setup)"
    data, broker = tmp_path / "city", tmp_path / "broker"
    port = free_port()
    argv = ["init", "--data-dir", str(data), "--scenario", str(scenario)]
    argv += ["--broker-config", str(broker), "--broker-port", str(port)]
    argv += ["--broker-data", f"{broker}/"]
    if os.geteuid() == 0:
        # As root Mosquitto drops to user mosquitto, who cannot enter pytest's 0700 tmp_path;
        # the files go to root all the same (--broker-owner: what the container's init does).
        argv += ["--broker-run-as", "root", "--broker-owner", "0:0"]
    done = secrets(*argv)
    assert done.returncode == 0, done.stderr
    assert (broker / "passwd").read_text().startswith("gateway:$7$101$")
    assert (broker / "broker.key").stat().st_mode & 0o077 == 0
    creds = CitySecurity.at(data).credentials
    observer = creds.mqtt_password("observer")
    proc = subprocess.Popen(
        [mosquitto, "-c", str(broker / "mosquitto.conf")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        ready = TlsReady("::1", port)
        deadline = time.monotonic() + 10
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)

        def sub(*login: str, tls: bool = True) -> int:
            cmd = ["mosquitto_sub", "-h", "::1", "-p", str(port), "-t", "city/#", "-C", "1"]
            cmd += ["-W", "2", *login]
            cmd += ["--cafile", str(creds.ca_file)] if tls else []
            return subprocess.run(cmd, capture_output=True, check=False, timeout=20).returncode

        assert sub("-u", "observer", "-P", observer) == 27  # connected; timed out waiting
        assert sub("-u", "observer", "-P", "wrong") == 5  # CONNACK 5: not authorised
        assert sub() == 5  # anonymous
        assert sub("-u", "observer", "-P", observer, tls=False) not in (0, 27)
    finally:
        proc.terminate()
        output = proc.communicate(timeout=10)[0].decode()
    assert proc.returncode is not None, output
