"""Settings of every program: defaults < config file (TOML) < ``TESTBED_*`` environment < flags.

Read only at the entry point; inside, the programs take plain keyword arguments.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import platformdirs
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_db_path() -> Path:
    return Path(platformdirs.user_data_dir("r197-testbed")) / "platform.db"


class PlatformSettings(BaseModel):
    host: str = "::"
    port: int = Field(default=8000, ge=0, le=65535)
    db: str = Field(default_factory=lambda: str(default_db_path()))
    allow_remote_contexts: bool = True
    context_dir: str | None = None  # *.jsonld @context files resolved locally (--context-dir)
    auth_key_file: str | None = None  # HS256 key of the API's bearer tokens (--auth-key)
    allow_endpoints: list[str] = Field(default_factory=list)  # SSRF allow-list (--allow-endpoint)
    # InfluxDB v2 sink of the Property history (--influx URL ...; docs/platform.md)
    influx: str | None = None  # the server's URL; None: no sink
    influx_org: str = "r197"
    influx_bucket: str = "city"
    influx_token_file: str | None = None  # a file, not the token: a flag shows in `ps`
    influx_outbox: str | None = None  # default: beside the database (influx/outbox.py)


def default_queue_path() -> Path:
    return Path(platformdirs.user_data_dir("r197-testbed")) / "gateway-queue.db"


class GatewaySettings(BaseModel):
    platform_url: str = "http://[::1]:8000"
    tenant: str = ""
    queue: str = Field(default_factory=lambda: str(default_queue_path()))
    broker_url: str | None = "mqtt://[::1]:1883"
    broker_username: str | None = "gateway"
    broker_password: str | None = None
    broker_ca: str | None = None  # CA file for an mqtts:// broker (default: the system's CAs)
    shared_group: str = "r197-gateways"
    # The MQTT client id: stable, so the broker keeps the session across restarts; unique per
    # gateway, or gateways sharing the load take the session over from each other.
    client_id: str = Field(default="r197-gateway", min_length=1, max_length=64)
    coap_host: str | None = "::1"
    coap_port: int = Field(default=5684, ge=0, le=65535)
    rd_url: str | None = "coap://[::1]:5783"
    http_host: str = "::1"
    http_port: int = Field(default=8081, ge=0, le=65535)
    southbound: bool = True
    batch_entities: int = Field(default=2000, ge=1, le=5000)
    uplink_lanes: int = Field(default=2, ge=1, le=16)
    profiles_dir: str | None = None
    # Files, not values: a token given on the command line shows in `ps`.
    platform_token_file: str | None = None  # bearer token for the platform (RFC 6750)
    notify_token_file: str | None = None  # the token POST /notify requires
    oscore_file: str | None = None  # devices' OSCORE keys (oscore.json): CoAP with OSCORE only


class Settings(BaseSettings):
    """All settings; ``TESTBED_PLATFORM__PORT=9000`` sets ``platform.port``."""

    model_config = SettingsConfigDict(env_prefix="TESTBED_", env_nested_delimiter="__")

    platform: PlatformSettings = Field(default_factory=PlatformSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)


def load_settings(config: Path | None) -> Settings:
    """Defaults, then the TOML file (if any), then the environment (pydantic-settings)."""
    data: dict[str, Any] = {}
    if config is not None:
        with config.open("rb") as handle:
            data = tomllib.load(handle)
    env = Settings()
    merged = Settings.model_validate(data) if data else env
    # Environment variables win over the file: re-apply those that were set explicitly.
    for section, values in env.model_dump(exclude_unset=True).items():
        current = getattr(merged, section).model_dump()
        current.update(values)
        setattr(merged, section, type(getattr(merged, section)).model_validate(current))
    return merged
