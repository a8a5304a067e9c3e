"""Recipient policy: who may send to whom, from the agents' applied policies."""

from __future__ import annotations

from hyperhive.policies import PolicyBook
from hyperhive.wire.errors import ErrorCode, HiveError
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
