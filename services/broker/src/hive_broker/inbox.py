"""Agent inboxes on JetStream, the broker's side: one subject and one durable pull consumer per owner (an agent,
or `operator`). The broker stores what is sent and shows inboxes to the operator; owners pull and acknowledge their
own messages directly (`hyperhive.inbox`)."""

from __future__ import annotations

import logging
from collections import deque
from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from hyperhive.bus import encode
from hyperhive.inbox import STREAM, consumer_name
from hyperhive.wire import subjects
from hyperhive.wire.models import InboxEntry, InboxReply, Message

log = logging.getLogger("hive_broker.inbox")

CONSUMER_PREFIX = consumer_name("")


class Inboxes:
    def __init__(self, js: JetStreamContext, *, ack_wait: float) -> None:
        self._js = js
        self._ack_wait = ack_wait
        self._ready: set[str] = set()

    async def ensure(self, owner: str, *, again: bool = False) -> None:
        """Create the owner's durable consumer (idempotent); afterwards messages wait for it in the stream.
        Remembered, so a send does not ask the server each time; `again` asks anyway (an owner opening its inbox
        after losing its consumer gets it back)."""
        if owner in self._ready and not again:
            return
        await self._js.add_consumer(
            STREAM,
            js_api.ConsumerConfig(
                durable_name=consumer_name(owner),
                filter_subject=subjects.inbox(owner),
                deliver_policy=js_api.DeliverPolicy.ALL,
                ack_policy=js_api.AckPolicy.EXPLICIT,
                ack_wait=self._ack_wait,
                max_ack_pending=1000,
            ),
        )
        self._ready.add(owner)

    async def put(self, owner: str, message: Message, dedupe_id: str) -> tuple[int, bool]:
        """Store `message` in `owner`'s inbox; return its stream sequence and whether it was a duplicate."""
        await self.ensure(owner)
        ack = await self._js.publish(
            subjects.inbox(owner), encode(message), stream=STREAM, headers={"Nats-Msg-Id": dedupe_id}
        )
        return ack.seq, bool(ack.duplicate)

    async def depths(self) -> dict[str, int]:
        """Messages not yet acknowledged, per inbox."""
        out: dict[str, int] = {}
        for info in await self._js.consumers_info(STREAM):
            name = info.name or ""
            if name.startswith(CONSUMER_PREFIX):
                out[name.removeprefix(CONSUMER_PREFIX)] = (info.num_pending or 0) + (info.num_ack_pending or 0)
        return out

    async def view(self, owner: str, limit: int) -> InboxReply:
        """The last `limit` messages of an inbox, each `delivered` (acknowledged) or `pending`.

        This scans the owner's messages with an ephemeral ordered consumer: fine for an operator's view of one
        inbox; the dashboard keeps its own read model for anything heavier.
        """
        await self.ensure(owner)
        consumer = await self._js.consumer_info(STREAM, consumer_name(owner))
        floor = consumer.ack_floor.stream_seq if consumer.ack_floor else 0
        pending = (consumer.num_pending or 0) + (consumer.num_ack_pending or 0)
        stream = await self._js.stream_info(STREAM, subjects_filter=subjects.inbox(owner))
        total = (stream.state.subjects or {}).get(subjects.inbox(owner), 0)
        recent: deque[Message] = deque(maxlen=limit)
        if total:
            sub = await self._js.subscribe(subjects.inbox(owner), ordered_consumer=True)
            try:
                while True:
                    msg = await sub.next_msg(timeout=10)
                    try:
                        message = Message.model_validate_json(msg.data)
                    except ValidationError:  # never stored by us; the owner's harness sets it aside when it comes
                        log.warning("owner=%s seq=%d outcome=unreadable_message", owner, msg.metadata.sequence.stream)
                    else:
                        recent.append(message.model_copy(update={"seq": msg.metadata.sequence.stream}))
                    if msg.metadata.num_pending == 0:
                        break
            finally:
                await sub.unsubscribe()
        entries = [InboxEntry(message=m, state="delivered" if m.seq <= floor else "pending") for m in recent]
        return InboxReply(owner=owner, entries=entries, pending=pending)

    async def sweep(self, retention: timedelta) -> int:
        """Delete delivered messages older than `retention`; undelivered ones are kept whatever their age."""
        cutoff = datetime.now(UTC) - retention
        removed = 0
        for info in await self._js.consumers_info(STREAM):
            name = info.name or ""
            if not name.startswith(CONSUMER_PREFIX) or info.ack_floor is None:
                continue
            owner, floor, seq = name.removeprefix(CONSUMER_PREFIX), info.ack_floor.stream_seq, 1
            while True:
                try:
                    raw = await self._js.get_msg(STREAM, seq=seq, next=True, subject=subjects.inbox(owner))
                except NotFoundError:
                    break
                if raw.seq is None or raw.data is None or raw.seq > floor:
                    break
                if raw.time is None or raw.time > cutoff:  # when it was stored: no need to trust the body
                    break
                await self._js.delete_msg(STREAM, raw.seq)
                removed += 1
                seq = raw.seq + 1
        return removed
