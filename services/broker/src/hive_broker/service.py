"""The broker's wiring: agent-plane and tool-plane verbs (the caller from the subject), operator-plane verbs, and
events."""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.nuid import NUID
from pydantic import BaseModel

from hive_broker.inbox import Inboxes
from hive_broker.policy import recipients, tool_recipients
from hyperhive import bus, events
from hyperhive.policies import Book, PolicyBook
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    DEPTHS_PER_SAMPLE,
    MAX_BODY_BYTES,
    DepthsReply,
    Empty,
    InboxDepths,
    InboxReply,
    InboxRequest,
    Message,
    MessageRefused,
    OperatorSendRequest,
    SendReply,
    SendRequest,
    ToolGrant,
    ToolMessage,
)
from hyperhive.wire.names import BROADCAST, OPERATOR, SYSTEM, check_agent_ref

log = logging.getLogger("hive_broker")


def check_body(body: str) -> None:
    if not body.strip():
        raise HiveError(ErrorCode.INVALID_BODY, "The message body is empty; write something to send.")
    try:
        size = len(body.encode("utf-8"))
    except UnicodeEncodeError:
        raise HiveError(ErrorCode.INVALID_BODY, "The message body is not valid UTF-8 (a lone surrogate?).") from None
    if size > MAX_BODY_BYTES:
        raise HiveError(
            ErrorCode.INVALID_BODY,
            f"The message body is {size} bytes; the limit is {MAX_BODY_BYTES}. "
            "Send a shorter message, or put the details in a file and send its path.",
        )


def _all_or_say_who(mid: str, targets: list[str], results: Sequence[object]) -> None:
    """A broadcast stored for some recipients and not others fails with the first refusal, naming who has it and
    the id: sending again with that id reaches the rest, and those who have it do not get it twice."""
    failed = [(r, x) for r, x in zip(targets, results, strict=True) if isinstance(x, BaseException)]
    if not failed:
        return
    first = failed[0][1]
    if not isinstance(first, HiveError):
        raise first
    have = [r for r, x in zip(targets, results, strict=True) if not isinstance(x, BaseException)]
    raise HiveError(
        first.code,
        f"{first.message} Stored for {', '.join(have) or 'nobody'}; not for {', '.join(r for r, _ in failed)}. "
        f"Send again with id {mid!r} to reach the rest without doubling.",
    )


class Broker:
    def __init__(self, nc: Client, inboxes: Inboxes, policy: PolicyBook, tools: Book[ToolGrant]) -> None:
        self.nc = nc
        self.inboxes = inboxes
        self.policy = policy
        self.tools = tools
        # One lock per sender: its messages are stored in the order it sent them, other senders run in parallel.
        self._order: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._ids = NUID()  # unique and much cheaper than uuid4

    async def deliver(self, sender: str, to: str, body: str, message_id: str | None) -> SendReply:
        """Queue `body` from `sender` (already authenticated) for `to`, after the recipient policy agrees."""
        check_body(body)
        try:
            targets = await self._targets(sender, to)
        except HiveError as exc:
            if exc.code == ErrorCode.NOT_ALLOWED:
                log.info("sender=%s to=%s outcome=refused", sender, to)
                refused = MessageRefused(sender=sender, to=to, reason=exc.message)
                await self._audit("message_refused", refused, sender)
            raise
        mid = message_id or self._ids.next().decode()
        message = Message(id=mid, sender=sender, to=to, body=body, sent_at=datetime.now(UTC), broadcast=to == BROADCAST)
        async with self._order[sender]:
            if len(targets) == 1:  # the common case, without a task per recipient
                await self.inboxes.put(targets[0], message, f"{sender}:{mid}:{targets[0]}")
            else:
                results = await asyncio.gather(
                    *(self.inboxes.put(r, message, f"{sender}:{mid}:{r}") for r in targets), return_exceptions=True
                )
                _all_or_say_who(mid, targets, results)
        # No `message_sent` event: the inbox stream is the record of what was sent (decision 0006). A tool's messages
        # are audited besides: the tool is no agent of the hive, and its sends are the operator's to review.
        if sender.startswith(subjects.TOOL_SENDER):
            size = len(body.encode())
            record = ToolMessage(tool=sender, id=mid, to=to, recipients=targets, bytes=size)
            await self._audit("tool_message", record, to if to != BROADCAST else SYSTEM)
        return SendReply(id=mid, recipients=targets)

    async def _targets(self, sender: str, to: str) -> list[str]:
        if sender == SYSTEM:
            return [to]
        if sender.startswith(subjects.TOOL_SENDER):
            tool = sender.removeprefix(subjects.TOOL_SENDER)
            return tool_recipients(self.policy, tool, await self.tools.lookup(tool), to)
        return recipients(self.policy, sender, to)

    async def _audit(self, kind: str, record: BaseModel, about: str) -> None:
        """Store an audit record; what it records stands either way, and a record's loss is logged."""
        try:
            await events.publish(self.nc, kind, record, about=about)
        except HiveError as lost:
            log.error("event=%s about=%s outcome=unrecorded error=%s", kind, about, lost)

    async def system_message(self, to: str, body: str, message_id: str) -> None:
        await self.deliver(SYSTEM, to, body, message_id)

    # ── agent plane: the caller is the subject's <name> ──

    async def agent_send(self, subject: str, req: SendRequest) -> SendReply:
        return await self.deliver(subjects.caller(subject), req.to, req.body, req.id)

    async def agent_open(self, subject: str, req: Empty) -> Empty:
        """Create the caller's inbox consumer, so its harness can pull from it."""
        await self.inboxes.ensure(subjects.caller(subject), again=True)
        return Empty()

    # ── tool plane: the tool is the subject's <name> ──

    async def tool_send(self, subject: str, req: SendRequest) -> SendReply:
        return await self.deliver(subjects.tool_sender(subjects.tool_caller(subject)), req.to, req.body, req.id)

    # ── operator plane ──

    async def operator_send(self, subject: str, req: OperatorSendRequest) -> SendReply:
        if req.to == OPERATOR:
            raise HiveError(ErrorCode.INVALID_REQUEST, "The operator cannot send to 'operator'; name an agent or '*'.")
        return await self.deliver(OPERATOR, req.to, req.body, None)

    async def operator_open(self, subject: str, req: Empty) -> Empty:
        await self.inboxes.ensure(OPERATOR, again=True)
        return Empty()

    async def inbox(self, subject: str, req: InboxRequest) -> InboxReply:
        if req.owner != OPERATOR and not self.policy.exists(check_agent_ref(req.owner)):
            raise HiveError(ErrorCode.NOT_FOUND, f"There is no agent {req.owner!r}.")
        return await self.inboxes.view(req.owner, req.limit)

    async def depths(self, subject: str, req: Empty) -> DepthsReply:
        return DepthsReply(depths=await self.inboxes.depths())

    async def sample_depths(self, every: float) -> None:
        """`hive.stats.inboxes`: the depths that changed since the last sample, every `every` seconds, so that a
        paused agent's growing inbox is charted too (its harness says its depth only when a turn begins). One
        question to JetStream a sample, whatever the number of inboxes. A sample lost to an outage is only a missing
        point: a depth the broker could not read is read again at the next tick."""
        sent: dict[str, int] = {}
        while True:
            try:
                depths = await self.inboxes.depths()
                changed = sorted(
                    (agent, depth)
                    for agent, depth in depths.items()
                    if agent != OPERATOR and sent.get(agent) != depth  # the agents' inboxes are charted
                )
                for at in range(0, len(changed), DEPTHS_PER_SAMPLE):
                    sample = InboxDepths(depths=dict(changed[at : at + DEPTHS_PER_SAMPLE]))
                    await self.nc.publish(subjects.INBOX_DEPTHS, bus.encode(sample))
                    sent.update(sample.depths)
            except (nats.errors.Error, nats.js.errors.Error) as exc:
                log.warning("outcome=depths_unsampled error=%r", exc)
            await asyncio.sleep(every)  # a timer: what is sampled is the time series

    def endpoints(self) -> list[bus.Endpoint[Any]]:
        broker = subjects.BROKER
        return [
            bus.agent_verb(subjects.SEND, SendRequest, self.agent_send),
            bus.agent_verb(subjects.OPEN, Empty, self.agent_open),
            bus.tool_verb(subjects.SEND, SendRequest, self.tool_send),
            bus.operator_verb(broker, "send", OperatorSendRequest, self.operator_send, name="operator-send"),
            bus.operator_verb(broker, "open", Empty, self.operator_open, name="operator-open"),
            bus.operator_verb(broker, "inbox", InboxRequest, self.inbox),
            bus.operator_verb(broker, "depths", Empty, self.depths),
        ]
