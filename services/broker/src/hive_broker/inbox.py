"""Agent inboxes on JetStream, the broker's side: one subject and one durable pull consumer per owner (an agent,
or `operator`). The broker stores what is sent and shows inboxes to the operator; owners pull and acknowledge their
own messages directly (`hyperhive.inbox`).

Space: an inbox holds at most `hyperhive.streams.INBOX_LIMIT` messages (the stream's per-subject limit, enforced by the
server), and delivered messages are kept only while there is room. When an inbox or the whole store is full, the
delivered messages make way (`reclaim`) before a send is refused: `inbox_full` when the owner has that many unread,
and `unavailable` when the store is full of what nobody has read yet.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.js.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from pydantic import ValidationError

from hyperhive.bus import encode
from hyperhive.inbox import STREAM, consumer_name
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import InboxEntry, InboxReply, Message

log = logging.getLogger("hive_broker.inbox")

CONSUMER_PREFIX = consumer_name("")
SUBJECT_FULL = 10077  # JetStream: "maximum messages per subject exceeded" (the inbox's limit)
STORE_FULL = frozenset({10002, 10023})  # "resource limits exceeded for account", "insufficient resources"


class Inboxes:
    def __init__(self, nc: Client, js: JetStreamContext, *, ack_wait: float) -> None:
        self._nc = nc
        self._js = js
        self._ack_wait = ack_wait
        self._ready: set[str] = set()
        self._reclaiming = asyncio.Lock()

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
        """Store `message` in `owner`'s inbox; return its stream sequence and whether it was a duplicate.

        A full inbox or store first gives up delivered messages; only what nobody has read yet refuses a send,
        and then nothing was stored."""
        await self.ensure(owner)
        data, headers = encode(message), {"Nats-Msg-Id": dedupe_id}
        for last_try in (False, True):
            try:
                ack = await self._js.publish(subjects.inbox(owner), data, stream=STREAM, headers=headers)
                return ack.seq, bool(ack.duplicate)
            except nats.js.errors.APIError as exc:
                if exc.err_code == SUBJECT_FULL:
                    if last_try or not await self.reclaim([owner]):
                        limit = (await self._js.stream_info(STREAM)).config.max_msgs_per_subject
                        raise HiveError(
                            ErrorCode.INBOX_FULL,
                            f"The inbox of {owner} is full: {limit} messages wait for {owner} to read them. "
                            "Send again once it has read some.",
                        ) from None
                elif exc.err_code in STORE_FULL:
                    if last_try or not await self.reclaim():
                        raise HiveError(
                            ErrorCode.UNAVAILABLE,
                            "The hive's message store is full of unread messages; nothing was stored. "
                            "Send again once agents have read theirs, or give the store more room.",
                        ) from None
                else:
                    raise
        raise AssertionError("unreachable")

    async def reclaim(self, owners: list[str] | None = None) -> int:
        """Remove the delivered messages of these inboxes (of all when None), whatever their age, to make room
        for undelivered ones; return how many went. Undelivered messages are never removed."""
        async with self._reclaiming:
            floors = await self._floors(owners)
            removed = sum([await self._purge(owner, keep_from=floor + 1) for owner, floor in floors.items()])
        log.warning("inboxes=%s outcome=reclaimed removed=%d", ",".join(floors) or "-", removed)
        return removed

    async def sweep(self, retention: timedelta) -> int:
        """Remove delivered messages older than `retention`; undelivered ones are kept whatever their age."""
        cutoff = datetime.now(UTC) - retention
        removed = 0
        for owner, floor in (await self._floors(None)).items():
            # The first message stored at or after the cutoff, by the server's clock (no need to trust a body).
            newer = await self._probe(
                owner, deliver_policy=js_api.DeliverPolicy.BY_START_TIME, opt_start_time=cutoff.isoformat()
            )
            removed += await self._purge(owner, keep_from=min(floor + 1, _next_seq(newer)))
        return removed

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

        Only those are read, however many the inbox holds: where the last `limit` begin is found by asking the
        server how many messages of the inbox follow a sequence (a binary search over sequences)."""
        await self.ensure(owner)
        consumer = await self._js.consumer_info(STREAM, consumer_name(owner))
        floor = consumer.ack_floor.stream_seq if consumer.ack_floor else 0
        pending = (consumer.num_pending or 0) + (consumer.num_ack_pending or 0)
        start = await self._start_of_last(owner, limit)
        recent: list[Message] = []
        if start is not None:
            config = js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start)
            sub = await self._js.subscribe(subjects.inbox(owner), ordered_consumer=True, config=config)
            try:
                while len(recent) < limit:
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

    async def _start_of_last(self, owner: str, count: int) -> int | None:
        """The stream sequence from which `owner`'s inbox holds its last `count` messages; None when it is empty."""
        try:
            last = (await self._js.get_msg(STREAM, subject=subjects.inbox(owner))).seq or 0
        except NotFoundError:
            return None
        lo, hi = 1, last  # from lo on there are at least `count`; from hi on, at most
        if await self._following(owner, lo) <= count:
            return lo
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if await self._following(owner, mid) >= count:
                lo = mid
            else:
                hi = mid
        return lo

    async def _following(self, owner: str, seq: int) -> int:
        """How many of `owner`'s messages are stored at `seq` or later."""
        info = await self._probe(owner, deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seq)
        return info.num_pending or 0

    async def _probe(self, owner: str, **where: Any) -> js_api.ConsumerInfo:
        """Ask the server where a consumer of `owner`'s inbox starting `where` would begin, without reading."""
        config = js_api.ConsumerConfig(
            filter_subject=subjects.inbox(owner),
            ack_policy=js_api.AckPolicy.NONE,
            mem_storage=True,
            inactive_threshold=10.0,
            **where,
        )
        info = await self._js.add_consumer(STREAM, config)
        await self._js.delete_consumer(STREAM, info.name)
        return info

    async def _floors(self, owners: list[str] | None) -> dict[str, int]:
        """Each inbox's ack floor: every message up to it is delivered."""
        floors = {}
        for info in await self._js.consumers_info(STREAM):
            name = info.name or ""
            owner = name.removeprefix(CONSUMER_PREFIX)
            if name.startswith(CONSUMER_PREFIX) and (owners is None or owner in owners) and info.ack_floor:
                floors[owner] = info.ack_floor.stream_seq
        return floors

    async def _purge(self, owner: str, *, keep_from: int) -> int:
        """Remove `owner`'s messages stored before sequence `keep_from`; return how many went."""
        if keep_from <= 1:
            return 0
        request = json.dumps({"filter": subjects.inbox(owner), "seq": keep_from}).encode()
        answer = json.loads((await self._nc.request(f"$JS.API.STREAM.PURGE.{STREAM}", request, timeout=10)).data)
        if "error" in answer:
            raise HiveError(ErrorCode.UNAVAILABLE, f"Could not remove delivered messages: {answer['error']}")
        return int(answer.get("purged", 0))


def _next_seq(info: js_api.ConsumerInfo) -> int:
    """The first stream sequence a fresh consumer would deliver."""
    return (info.delivered.stream_seq if info.delivered else 0) + 1
