"""Recipient policy: who may send to whom, from the agents' applied policies and the tools' grants."""

from __future__ import annotations

from hyperhive.policies import PolicyBook
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import ToolGrant
from hyperhive.wire.names import BROADCAST, MANAGER, OPERATOR


def recipients(book: PolicyBook, sender: str, to: str) -> list[str]:
    """The inboxes `sender`'s message to `to` goes to, or a refusal the model can act on.

    The manager may send anywhere. Others send where their `allowedRecipients` says; `operator` and `*` only when
    listed. An agent with no policy yet may reach the manager and the operator.
    """
    if to == BROADCAST:
        targets = [a for a in book.agents() if a != sender]
    elif to == OPERATOR or book.exists(to):
        targets = [to]
    else:
        raise HiveError(
            ErrorCode.UNKNOWN_RECIPIENT, f"There is no agent {to!r}. Known: {', '.join(book.agents())}, or 'operator'."
        )
    if sender in (MANAGER, OPERATOR):
        return targets
    policy = book.get(sender)
    allowed = set(policy.allowed_recipients) if policy is not None else {MANAGER, OPERATOR}
    if to not in allowed:
        raise HiveError(
            ErrorCode.NOT_ALLOWED,
            f"You may not send to {to!r}. Your allowed recipients: "
            f"{', '.join(sorted(allowed)) or 'none'}; ask the manager to change your agent.nix.",
        )
    return targets


def tool_recipients(book: PolicyBook, tool: str, grant: ToolGrant | None, to: str) -> list[str]:
    """The inboxes tool `tool`'s message to `to` goes to: only where its grant says, and only agents that take
    messages from tools (`acceptTools`, on by default). A broadcast skips those that do not."""
    if grant is None:  # its user is gone from the server before its grant: a send in between is refused
        raise HiveError(ErrorCode.NOT_ALLOWED, f"Tool {tool!r} is not admitted (revoked?).")
    if to == BROADCAST:
        if not grant.broadcast:
            raise HiveError(
                ErrorCode.NOT_ALLOWED, f"Tool {tool!r} may not send to '*' (`hivectl tool add --broadcast`)."
            )
        return [a for a in book.agents() if _takes_tools(book, a)]
    if to not in grant.send:
        allowed = ", ".join(grant.send) or "nobody"
        raise HiveError(ErrorCode.NOT_ALLOWED, f"Tool {tool!r} may not send to {to!r}; it may send to: {allowed}.")
    if to != OPERATOR and not book.exists(to):
        raise HiveError(ErrorCode.UNKNOWN_RECIPIENT, f"There is no agent {to!r}.")
    if to != OPERATOR and not _takes_tools(book, to):
        raise HiveError(
            ErrorCode.NOT_ALLOWED, f"{to!r} takes no messages from tools (its agent.nix: acceptTools = false)."
        )
    return [to]


def _takes_tools(book: PolicyBook, agent: str) -> bool:
    policy = book.get(agent)
    return policy is None or policy.accept_tools
