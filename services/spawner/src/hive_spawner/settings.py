"""Spawner settings (`HIVE_` environment variables)."""

from pydantic import Field

from hyperhive.settings import HiveSettings


class SpawnerSettings(HiveSettings):
    host: str = Field("local", pattern=r"^[a-z][a-z0-9-]{0,30}$", description="Which work queue this spawner serves.")
