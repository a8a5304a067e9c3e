"""Kept for the spawner's chaos tests while they move to hivetest (see hivetest.agents, hivetest.services)."""

from hivetest.agents import make_agent, operator_call
from hivetest.services import approver_settings

__all__ = ["approver_settings", "make_agent", "operator_call"]
