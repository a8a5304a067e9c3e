"""Approver settings (`HIVE_` environment variables)."""

from pydantic import Field

from hyperhive.settings import HiveSettings


class ApproverSettings(HiveSettings):
    database_url: str = Field(min_length=1, description="PostgreSQL URL of the hive's database.")
    spawner_host: str = Field("local", description="Which spawner's work queue gets approved commands.")
