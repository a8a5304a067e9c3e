"""The wire contract, in one place: `subjects`, `models`, `errors` and the agent-name rule in `names`."""

from hyperhive.wire.errors import ErrorCode, ErrorReply, HiveError

__all__ = ["ErrorCode", "ErrorReply", "HiveError"]
