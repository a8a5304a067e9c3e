"""Configuration from the environment (`HIVE_` prefix), with defaults that work for `hivectl up`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TypeVar

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


def default_state_dir() -> Path:
    """Root keeps the hive in /var/lib: agents run as their own uids and must reach their state dirs, which they
    cannot under /root (mode 0700). Anyone else keeps it in their home; their agents run as themselves."""
    if os.geteuid() == 0:
        return Path("/var/lib/hyperhive")
    return Path.home() / ".local" / "share" / "hyperhive"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it by its environment variable."""


class HiveSettings(BaseSettings):
    """What every hive process needs: where NATS is and who it is there."""

    model_config = SettingsConfigDict(env_prefix="HIVE_", extra="ignore")

    nats_url: str = Field("nats://127.0.0.1:4222", description="Where the hive's nats-server listens.")
    nats_creds: Path | None = Field(
        None, description="This process's NATS nkey seed file (mode 0600); none on an open server."
    )
    state_dir: Path = Field(default_factory=default_state_dir, description="Root of the hive's host state.")
    log_level: str = Field("INFO", description="Python logging level for this process.")


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S]) -> S:
    """Read settings, turning pydantic's report into one sentence per bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = str(cls.model_config.get("env_prefix", ""))
        problems = []
        for error in exc.errors():
            var = prefix + "_".join(str(part) for part in error["loc"]).upper()
            if error["type"] == "missing":
                problems.append(f"Setting {var} is missing, and has no default.")
            else:
                problems.append(f"Setting {var} is invalid: {error['msg']}.")
        raise SettingsError(" ".join(problems)) from None
