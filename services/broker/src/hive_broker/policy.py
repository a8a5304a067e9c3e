"""Recipient policy: who may send to whom, from the applied policies the spawner keeps in JetStream KV."""

from __future__ import annotations

import asyncio
import logging

from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import ValidationError

from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AgentPolicy
from hyperhive.wire.names import BROADCAST, MANAGER, OPERATOR

log = logging.getLogger("hive_broker.policy")


class RecipientPolicy:
    """The hive's agents and what each may send to, kept current by a KV watch (pushed, never polled)."""

    def __init__(self) -> None:
        self._policies: dict[str, AgentPolicy] = {}
        self.loaded = asyncio.Event()
        self.revision = 0
        self._changed = asyncio.Condition()

    async def follow(self, kv: KeyValue) -> None:
        """Apply every change of the policy bucket until cancelled."""
        watcher = await kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    self.loaded.set()
                    continue
                if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                    self._policies.pop(entry.key, None)
                else:
                    try:
                        self._policies[entry.key] = AgentPolicy.model_validate_json(entry.value)
                    except ValidationError:
                        log.exception("agent=%s outcome=bad_policy", entry.key)
                async with self._changed:
                    self.revision = max(self.revision, entry.revision or 0)
                    self._changed.notify_all()
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

    async def caught_up(self, revision: int) -> None:
        """Wait until the bucket change with this revision has been applied."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.revision >= revision)

    def agents(self) -> list[str]:
        """Every agent of the hive; the manager always exists."""
        return sorted({MANAGER, *self._policies})

    def exists(self, name: str) -> bool:
        return name == MANAGER or name in self._policies

    def recipients(self, sender: str, to: str) -> list[str]:
        """The inboxes `sender`'s message to `to` goes to, or a refusal the model can act on.

        The manager may send anywhere. Others send where their `allowedRecipients` says; `operator` and `*` only
        when listed. An agent with no policy yet may reach the manager and the operator.
        """
        if to == BROADCAST:
            targets = [a for a in self.agents() if a != sender]
        elif to == OPERATOR or self.exists(to):
            targets = [to]
        else:
            raise HiveError(
                ErrorCode.UNKNOWN_RECIPIENT,
                f"There is no agent {to!r}. Known: {', '.join(self.agents())}, or 'operator'.",
            )
        if sender in (MANAGER, OPERATOR):
            return targets
        policy = self._policies.get(sender)
        allowed = set(policy.allowed_recipients) if policy is not None else {MANAGER, OPERATOR}
        if to not in allowed:
            raise HiveError(
                ErrorCode.NOT_ALLOWED,
                f"You may not send to {to!r}. Your allowed recipients: "
                f"{', '.join(sorted(allowed)) or 'none'}; ask the manager to change your agent.nix.",
            )
        return targets
