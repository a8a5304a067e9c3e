"""The agent-name rule, checked at every boundary before a name becomes a subject token or a path.

Names are `^[a-z][a-z0-9-]{0,8}$`, not ending in `-`. `operator`, `system`, `manager` and `all` are reserved:
`manager` is the one privileged agent the hive creates itself, the others are never agents.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import AfterValidator

from hyperhive.wire.errors import ErrorCode, HiveError

NAME_PATTERN = re.compile(r"[a-z][a-z0-9-]{0,8}")
MANAGER = "manager"
OPERATOR = "operator"
SYSTEM = "system"
BROADCAST = "*"
RESERVED = frozenset({OPERATOR, SYSTEM, MANAGER, "all"})
TOOL_SENDER = "tool:"

Party = Literal["peer", "operator", "manager", "system", "tool"]
"""Who is on the other end of a message, for the stats: another agent (or everyone), the operator, the manager,
the hive itself, or a tool."""


def check_agent_ref(name: str) -> str:
    """Any existing agent, the manager included: the form of every `<name>` subject token."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name) or name.endswith("-"):
        raise HiveError(
            ErrorCode.INVALID_NAME,
            f"Agent name {name!r} is invalid: use 1-9 characters a-z, 0-9 and '-', "
            "starting with a letter and not ending in '-'.",
        )
    if name in RESERVED and name != MANAGER:
        raise HiveError(ErrorCode.INVALID_NAME, f"Agent name {name!r} is reserved.")
    return name


def check_agent_name(name: str) -> str:
    """A name a new agent may take: the rule, and none of the reserved names (not even `manager`)."""
    check_agent_ref(name)
    if name in RESERVED:
        raise HiveError(ErrorCode.INVALID_NAME, f"Agent name {name!r} is reserved.")
    return name


def check_recipient(to: str) -> str:
    """Where `send` may go: an agent (or `manager`), `operator`, or `*` for a broadcast."""
    if to in (OPERATOR, BROADCAST):
        return to
    return check_agent_ref(to)


def party(name: str) -> Party:
    """The party of a message's sender or recipient (`*`, a broadcast, goes to peers)."""
    parties: dict[str, Party] = {OPERATOR: "operator", MANAGER: "manager", SYSTEM: "system"}
    return parties.get(name) or ("tool" if name.startswith(TOOL_SENDER) else "peer")


def _field(check: Callable[[str], str]) -> AfterValidator:
    """Wrap a check for pydantic, so a bad name in a model gives the same sentence as anywhere else."""

    def validate(value: str) -> str:
        try:
            return check(value)
        except HiveError as exc:
            raise ValueError(exc.message) from exc

    return AfterValidator(validate)


AgentRef = Annotated[str, _field(check_agent_ref)]
"""An existing agent, `manager` included."""
Recipient = Annotated[str, _field(check_recipient)]
"""An agent, `manager`, `operator`, or `*`."""
