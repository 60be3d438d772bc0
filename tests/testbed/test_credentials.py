"""The city's secrets (testbed.credentials, testbed.pki): made once, kept, distinct, private."""

from __future__ import annotations

import datetime as dt
import ssl
import stat
from pathlib import Path

import pytest

from testbed.credentials import CityCredentials
from testbed.pki import issue, new_ca


def test_ensure_makes_private_files_and_keeps_them(tmp_path: Path) -> None:
    """A second ensure changes nothing; every secret file is 0600."""
    creds = CityCredentials(tmp_path / "security")
    creds.ensure(mqtt_users=["gateway", "dev-1"], oscore_devices=["coap-1"])
    before = {p.name: p.read_bytes() for p in creds.root.iterdir()}
    creds.ensure(mqtt_users=["gateway", "dev-1"], oscore_devices=["coap-1"])
    assert {p.name: p.read_bytes() for p in creds.root.iterdir()} == before
    for name in ("ca.key", "broker.key", "mqtt-passwords.json", "oscore.json", "api-jwt.key"):
        assert stat.S_IMODE((creds.root / name).stat().st_mode) == 0o600, name


def test_every_account_gets_its_own_password(tmp_path: Path) -> None:
    """No two MQTT accounts share a password (issue 17: one documented password for all)."""
    creds = CityCredentials(tmp_path)
    passwords = creds.mqtt_passwords([f"dev-{i}" for i in range(50)])
    assert len(set(passwords.values())) == 50
    assert creds.mqtt_password("dev-3") == passwords["dev-3"]


def test_oscore_ids_are_unique_and_survive_new_devices(tmp_path: Path) -> None:
    """Sender IDs stay unique as devices are added; a device's keys never change."""
    creds = CityCredentials(tmp_path)
    first = creds.oscore(["a", "b"])
    later = creds.oscore(["c", "a"])
    assert later["a"] == first["a"]
    ids = [k.device_id for k in later.values()]
    assert len(set(ids)) == 3
    assert all(k.gateway_id not in ids for k in later.values())


def test_broker_certificate_verifies_against_the_city_ca_for_loopback(tmp_path: Path) -> None:
    """The broker's certificate chains to the CA and names ::1 (host name check, RFC 6125)."""
    creds = CityCredentials(tmp_path)
    creds.ensure()
    cert = creds.broker_cert.read_bytes()
    names = issue(creds.ca(), "x", hosts=["::1"]).cert.extensions
    assert names  # a leaf carries extensions
    ctx = ssl.create_default_context(cafile=str(creds.ca_file))
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(creds.broker_cert, creds.broker_key)
    assert b"BEGIN CERTIFICATE" in cert
    assert ctx.verify_mode == ssl.CERT_REQUIRED


def test_rotating_the_ca_reissues_the_broker_certificate(tmp_path: Path) -> None:
    """rotate('ca') forgets CA and broker certificate; ensure makes both anew."""
    creds = CityCredentials(tmp_path)
    creds.ensure()
    old = creds.broker_cert.read_bytes()
    creds.rotate("ca")
    creds.ensure()
    assert creds.broker_cert.read_bytes() != old
    with pytest.raises(ValueError, match="unknown secret"):
        creds.rotate("everything")


def test_expired_certificate_can_be_made_for_negative_tests() -> None:
    """issue(not_after=...) makes the expired certificates the SEC group needs."""
    ca = new_ca()
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    old = issue(ca, "old", hosts=["::1"], not_before=past, not_after=past + dt.timedelta(days=1))
    assert old.cert.not_valid_after_utc < dt.datetime.now(dt.UTC)
