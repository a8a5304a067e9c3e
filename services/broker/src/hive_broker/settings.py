"""Broker settings (`HIVE_` environment variables)."""

from pydantic import Field

from hyperhive.settings import HiveSettings


class BrokerSettings(HiveSettings):
    ack_wait_seconds: float = Field(
        120.0,
        gt=0,
        description="A message taken but neither acked nor kept in progress for this long is delivered again.",
    )
    retention_days: float = Field(
        30.0, gt=0, description="Delivered messages are kept this long; undelivered ones forever."
    )
    janitor_interval_seconds: float = Field(
        3600.0, gt=0, description="How often delivered messages past retention are removed."
    )
    depth_sample_seconds: float = Field(
        15.0, gt=0, description="How often the inboxes' depths are sampled for the stats (only changes are sent)."
    )
