"""docker-compose.yml runs the same secure city: one image from this repository plus Mosquitto,
credentials from a one-shot init service (docs/security.md)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SECRETS = "/secrets"  # where the testbed services mount the init's secrets volume
BROKER_DIR = "/broker"  # where init writes the broker's files (mosquitto: /mosquitto/config)
INFLUX_DIR = "/influx"  # init's InfluxDB and Grafana secrets (the influx profile)
INFLUX_PROFILE = {"influxdb", "grafana"}
POSTGRES_PROFILE = {"postgres"}
SCALE_OUT_PROFILE = {"gateway-2", "gateway-3", "platform-2"}  # and postgres


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def test_compose_file_describes_the_whole_city_on_ipv6(compose: dict[str, Any]) -> None:
    """init, broker, platform, RD, gateway and devices; one built image; an IPv6 network."""
    services = compose["services"]
    assert set(services) == {
        "init", "mosquitto", "platform", "rd", "gateway", "devices", "dashboard", *INFLUX_PROFILE,
        *POSTGRES_PROFILE, *SCALE_OUT_PROFILE,
    }  # fmt: skip
    # Only the optional services are in a profile: a plain `docker compose up` is the city.
    optional = INFLUX_PROFILE | POSTGRES_PROFILE | SCALE_OUT_PROFILE
    assert {n for n, s in services.items() if "profiles" in s} == optional
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:")
    built = {name for name, s in services.items() if s.get("build") == "."}
    core = {"init", "platform", "rd", "gateway", "devices", "dashboard"}
    assert built == core | SCALE_OUT_PROFILE
    assert {s["image"] for name, s in services.items() if name in built} == {"r197-testbed:latest"}
    assert compose["networks"]["city"]["enable_ipv6"] is True
    for name in built:
        assert services[name]["command"][0] == "testbed"
    if shutil.which("docker-compose"):  # the real parser, where Debian's docker-compose is
        done = subprocess.run(
            ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr


def test_only_the_api_and_mqtt_over_tls_are_published(compose: dict[str, Any]) -> None:
    """The host sees the platform's 8000, MQTT over TLS on 8883 and the dashboard's 8090: no
    plain MQTT, no gateway metrics or /notify, no resource directory."""
    published = {name: service.get("ports", []) for name, service in compose["services"].items()}
    assert published == {
        "init": [], "mosquitto": ["8883:8883"], "platform": ["8000:8000"], "rd": [],
        "gateway": [], "devices": [], "dashboard": ["8090:8090"],
        "influxdb": [], "grafana": ["3000:3000"],  # the influx profile: Grafana's UI only
        "postgres": [],  # the postgres profile: inside the network only
        "gateway-2": [], "gateway-3": [], "platform-2": [],  # scale-out: behind the front ones
    }  # fmt: skip


def test_everything_waits_for_the_init_service_and_the_broker_is_tls_only(
    compose: dict[str, Any],
) -> None:
    """init runs once (`testbed secrets init`) before the broker, platform and RD
    (service_completed_successfully); the broker runs init's config from a read-only volume
    that holds its own files only; every testbed client speaks mqtts:// with the CA."""
    services = compose["services"]
    init = services["init"]
    assert init["restart"] == "no"
    assert init["command"][:3] == ["testbed", "secrets", "init"]
    for name in ("mosquitto", "platform", "rd", "gateway"):
        assert services[name]["depends_on"]["init"] == {
            "condition": "service_completed_successfully"
        }, name
    broker = services["mosquitto"]
    assert "broker-config:/mosquitto/config:ro" in broker["volumes"]
    assert not any(v.startswith("secrets:") for v in broker["volumes"])  # no API key, no OSCORE
    assert broker["command"] == ["mosquitto", "-c", "/mosquitto/config/mosquitto.conf"]
    text = yaml.safe_dump(compose)
    assert "mqtt://" not in text  # no plain MQTT anywhere
    for name in ("gateway", "devices"):
        command = services[name]["command"]
        assert command[command.index("--broker") + 1] == "mqtts://mosquitto:8883"
        assert "--broker-ca" in command
        assert "--oscore" in command
    assert "--oscore" in services["rd"]["command"]
    platform = services["platform"]["command"]
    assert platform[platform.index("--auth-key") + 1].startswith(SECRETS)
    allowed = [platform[i + 1] for i, arg in enumerate(platform) if arg == "--allow-endpoint"]
    assert allowed == ["http://gateway:8081/notify", "http://dashboard:8090/notify"]
    dashboard = services["dashboard"]["command"]
    assert dashboard[dashboard.index("--public-url") + 1] + "/notify" == allowed[1]
    assert dashboard[dashboard.index("--token-file") + 1].startswith(SECRETS)
    assert "secrets:/secrets:ro" in services["platform"]["volumes"]
    gateway = services["gateway"]["command"]
    assert "--platform-token-file" in gateway
    assert "--notify-token-file" in gateway
    assert not any("password" in arg for arg in gateway)  # it is in gateway.toml


def test_the_commands_parse_and_init_writes_every_file_they_name(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """Each testbed command line parses with the real CLI; init's command, run here with its
    volumes as directories, writes every /secrets file the others name and a TLS-only broker
    config without anonymous access."""
    from testbed.cli import build_parser  # noqa: PLC0415

    services = compose["services"]
    parser = build_parser()
    for service in services.values():
        if service.get("build") == ".":
            parser.parse_args(service["command"][1:])
    init = [
        arg.replace(SECRETS, str(tmp_path / "secrets"))
        .replace(BROKER_DIR, str(tmp_path / "b"))
        .replace(INFLUX_DIR, str(tmp_path / "influx"))
        for arg in services["init"]["command"][1:]
    ]
    owner = init.index("--broker-owner")
    del init[owner : owner + 2]  # chown to the container's mosquitto user: needs root
    done = subprocess.run(
        [sys.executable, "-m", "testbed", *init],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    named = {
        arg
        for service in services.values()
        for arg in service.get("command", [])
        if isinstance(arg, str) and arg.startswith(SECRETS + "/")
    }
    assert len(named) >= 7, named
    for path in named:
        assert (tmp_path / "secrets" / path.removeprefix(SECRETS + "/")).is_file(), path
    conf = (tmp_path / "b" / "mosquitto.conf").read_text().splitlines()
    assert [line for line in conf if line.startswith("listener")] == ["listener 8883 ::"]
    assert "allow_anonymous false" in conf
    assert "use_username_as_clientid true" in conf
    assert "cafile /mosquitto/config/ca.pem" in conf
    assert "password_file /mosquitto/config/passwd" in conf
    gateway_toml = (tmp_path / "secrets" / "security" / "gateway.toml").read_text()
    assert 'broker_username = "gateway"' in gateway_toml
    # The influx profile's secrets: every /influx file a service names, readable by the
    # InfluxDB and Grafana users (their directory is mounted only where they are needed).
    text = yaml.safe_dump(compose)
    influx_files = {w.strip("\"',") for w in text.split() if w.startswith(INFLUX_DIR + "/")}
    influx_files |= {"/influx/token"}
    for path in influx_files:
        made = tmp_path / "influx" / path.removeprefix(INFLUX_DIR + "/").split("}")[0]
        assert made.is_file(), path
        assert len(made.read_text()) >= 40
        assert made.stat().st_mode & 0o777 == 0o644


def test_dockerfile_installs_the_project_with_every_extra() -> None:
    """The image is built from the repository with all extras and the testbed command."""
    text = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir '.[all]'" in text
    for package in ("city_platform", "gateway", "devices", "conformance", "testbed"):
        assert f"COPY {package} {package}" in text


def test_the_influx_profile_runs_influxdb_2_and_grafana_with_provisioned_secrets(
    compose: dict[str, Any],
) -> None:
    """InfluxDB 2 is set up from init's files (no secret in the compose file), Grafana gets its
    admin password the same way and an InfluxDB datasource whose token is read from the file;
    the platform's sink is off unless TESTBED_INFLUX names the server."""
    services = compose["services"]
    influx = services["influxdb"]
    assert influx["image"] == "influxdb:2"
    env = influx["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"].startswith(INFLUX_DIR + "/")
    assert env["DOCKER_INFLUXDB_INIT_PASSWORD_FILE"].startswith(INFLUX_DIR + "/")
    assert not any(k.endswith(("_PASSWORD", "_TOKEN")) for k in env)  # values, not files
    assert "influx-secrets:/influx:ro" in influx["volumes"]
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana-oss:")
    assert grafana["environment"]["GF_SECURITY_ADMIN_PASSWORD__FILE"].startswith(INFLUX_DIR)
    assert grafana["environment"]["GF_AUTH_ANONYMOUS_ENABLED"] == "false"
    assert grafana["depends_on"]["influxdb"] == {"condition": "service_healthy"}
    source = yaml.safe_load(
        (ROOT / "docker/grafana/provisioning/datasources/influxdb.yaml").read_text()
    )["datasources"][0]
    assert source["type"] == "influxdb"
    assert source["url"] == "http://influxdb:8086"
    assert source["jsonData"]["organization"] == env["DOCKER_INFLUXDB_INIT_ORG"]
    assert source["jsonData"]["defaultBucket"] == env["DOCKER_INFLUXDB_INIT_BUCKET"]
    assert source["secureJsonData"]["token"] == "$__file{/influx/token}"
    platform = services["platform"]
    penv = platform["environment"]
    assert penv["TESTBED_PLATFORM__INFLUX"] == "${TESTBED_INFLUX:-}"  # empty: no sink
    assert penv["TESTBED_PLATFORM__INFLUX_ORG"] == env["DOCKER_INFLUXDB_INIT_ORG"]
    assert penv["TESTBED_PLATFORM__INFLUX_BUCKET"] == env["DOCKER_INFLUXDB_INIT_BUCKET"]
    assert (
        penv["TESTBED_PLATFORM__INFLUX_TOKEN_FILE"] == env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN_FILE"]
    )
    if shutil.which("docker-compose"):
        done = subprocess.run(
            ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "--profile", "influx",
             "config"],
            capture_output=True, text=True, check=False,
            env={"PATH": "/usr/bin:/bin", "TESTBED_INFLUX": "http://influxdb:8086"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        resolved = yaml.safe_load(done.stdout)["services"]
        assert resolved["platform"]["environment"]["TESTBED_PLATFORM__INFLUX"] == (
            "http://influxdb:8086"
        )
        assert set(resolved) >= INFLUX_PROFILE


def test_the_postgres_profile_points_the_platform_at_postgis_with_a_password_file(
    compose: dict[str, Any],
) -> None:
    """PostgreSQL 15 + PostGIS from the postgis image, its password made by init (no secret in
    the compose file or the URL: the platform reads it through PGPASSFILE); the platform stays
    on its SQLite file unless TESTBED_DB names the database."""
    services = compose["services"]
    pg = services["postgres"]
    assert pg["image"].startswith("postgis/postgis:15-3")
    assert pg["profiles"] == ["postgres", "scale-out"]  # platform-2 needs it too
    env = pg["environment"]
    assert env["POSTGRES_PASSWORD_FILE"] == "/pg/password"
    assert "POSTGRES_PASSWORD" not in env
    assert "pg-secrets:/pg:ro" in pg["volumes"]
    init = services["init"]["command"]
    assert init[init.index("--postgres-secrets") + 1] == "/pg"
    platform = services["platform"]
    assert "--db" not in platform["command"]  # TESTBED_PLATFORM__DB decides
    penv = platform["environment"]
    assert penv["TESTBED_PLATFORM__DB"] == "${TESTBED_DB:-/data/platform.db}"
    assert penv["PGPASSFILE"] == "/pg/pgpass"
    assert "pg-secrets:/pg:ro" in platform["volumes"]
    if shutil.which("docker-compose"):
        url = f"postgresql://{env['POSTGRES_USER']}@postgres:5432/{env['POSTGRES_DB']}"
        done = subprocess.run(
            ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "--profile", "postgres",
             "config"],
            capture_output=True, text=True, check=False,
            env={"PATH": "/usr/bin:/bin", "TESTBED_DB": url},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        resolved = yaml.safe_load(done.stdout)["services"]
        assert resolved["platform"]["environment"]["TESTBED_PLATFORM__DB"] == url
        assert set(resolved) >= POSTGRES_PROFILE


def test_init_makes_the_postgres_password_and_pgpass(tmp_path: Path) -> None:
    """What the postgres profile mounts: one password, the same in libpq's pgpass format,
    private files, kept across runs."""
    from testbed.pgcluster import write_postgres_secrets  # noqa: PLC0415

    write_postgres_secrets(tmp_path)
    password = (tmp_path / "password").read_text()
    assert len(password) >= 32
    assert (tmp_path / "pgpass").read_text() == f"*:*:city:city:{password}\n"
    assert (tmp_path / "password").stat().st_mode & 0o077 == 0
    assert (tmp_path / "pgpass").stat().st_mode & 0o077 == 0
    write_postgres_secrets(tmp_path)
    assert (tmp_path / "password").read_text() == password


def test_the_scale_out_profile_adds_gateways_with_accounts_of_their_own_and_a_platform(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    """gateway-2 and gateway-3 join the shared subscription with their own login (init's
    gateway-K.toml: username = client id, the broker's use_username_as_clientid) and queue
    volume, MQTT only; platform-2 runs on the same PostgreSQL database only (a SQLite file
    cannot be shared: it stops with a message), gateway-2 writes to it."""
    services = compose["services"]
    init = services["init"]["command"]
    assert init[init.index("--gateways") + 1] == "3"
    volumes = set()
    for k, platform in ((2, "http://platform-2:8000"), (3, "http://platform:8000")):
        gw = services[f"gateway-{k}"]
        assert gw["profiles"] == ["scale-out"]
        cmd = gw["command"]
        assert cmd[cmd.index("--config") + 1] == f"/secrets/security/gateway-{k}.toml"
        assert cmd[cmd.index("--platform") + 1] == platform
        assert cmd[cmd.index("--rd") + 1] == "off"
        assert "--no-southbound" in cmd
        assert "--oscore" not in cmd  # gateway 1's OSCORE contexts are its own
        assert gw["environment"]["TESTBED_GATEWAY__COAP_HOST"] == "off"
        assert not gw.get("ports")
        volumes.add(gw["volumes"][0])
    assert volumes == {"gateway-2-data:/data", "gateway-3-data:/data"}
    p2 = services["platform-2"]
    assert p2["command"] == services["platform"]["command"]
    assert p2["environment"]["TESTBED_PLATFORM__DB"] == "${TESTBED_DB:-}"
    guard = p2["entrypoint"][2].replace("$$", "$")
    for db, code in (("/data/platform.db", 2), ("postgresql://city@postgres:5432/city", 0)):
        done = subprocess.run(
            ["sh", "-c", guard, "platform-2", "true"], capture_output=True, text=True,
            env={"PATH": "/usr/bin:/bin", "TESTBED_PLATFORM__DB": db}, check=False,
        )  # fmt: skip
        assert done.returncode == code, (db, done.stderr)
    # init's logins for them (secrets init --gateways 3), each a distinct account.
    done = subprocess.run(
        [sys.executable, "-m", "testbed", "secrets", "init", "--data-dir", str(tmp_path),
         "--gateways", "3"],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    import tomllib  # noqa: PLC0415

    logins = [
        tomllib.loads((tmp_path / "security" / f"{n}.toml").read_text())["gateway"]
        for n in ("gateway", "gateway-2", "gateway-3")
    ]
    assert [g["broker_username"] for g in logins] == ["gateway", "gateway-2", "gateway-3"]
    assert [g.get("client_id") for g in logins[1:]] == ["gateway-2", "gateway-3"]
    assert len({g["broker_password"] for g in logins}) == 3
    if shutil.which("docker-compose"):
        done = subprocess.run(
            ["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "--profile", "scale-out",
             "config", "-q"],
            capture_output=True, text=True, check=False,
            env={"PATH": "/usr/bin:/bin", "TESTBED_DB": "postgresql://city@postgres:5432/city"},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
