"""Spawner settings (`HIVE_` environment variables)."""

from pathlib import Path

from pydantic import Field

from hyperhive.settings import HiveSettings


class SpawnerSettings(HiveSettings):
    host: str = Field("local", pattern=r"^[a-z][a-z0-9-]{0,30}$", description="Which work queue this spawner serves.")
    nats_auth_dir: Path | None = Field(
        None, description="The nats-server's identities folder (auth.conf, nats.pid); agents get credentials there."
    )
    agent_command: list[str] = Field(
        default_factory=lambda: ["python3", "-m", "hive_harness"],
        description="What runs inside an agent's sandbox (JSON list).",
    )
