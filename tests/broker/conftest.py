"""Kept for the spawner's chaos tests while they move to hivetest (see hivetest.services)."""

from hivetest.services import broker_settings

__all__ = ["broker_settings"]
