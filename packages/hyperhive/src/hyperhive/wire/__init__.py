"""The wire contract, in one place: `subjects`, `models`, `errors` and the agent-name rule in `names`."""

from hyperhive.wire.errors import ErrorCode, HiveError

__all__ = ["ErrorCode", "HiveError"]
