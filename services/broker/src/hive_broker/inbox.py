"""Agent inboxes on JetStream: one subject and one durable pull consumer per owner (an agent, or `operator`).

A message is acknowledged only when the owner's harness says it reached the model; until then it stays pending,
and comes again marked `redelivered` if the harness that took it is gone (a new session), or after `ack_wait`.
Delivery tokens are the JetStream ack subjects, so any broker replica, or a restarted one, can acknowledge them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections import deque
from datetime import UTC, datetime, timedelta

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from hyperhive.bus import encode
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import InboxEntry, InboxReply, Message

log = logging.getLogger("hive_broker.inbox")

STREAM = subjects.INBOX_STREAM
CONSUMER_PREFIX = "inbox-"
TOKEN_PATTERN = re.compile(r"\$JS\.ACK\.[A-Za-z0-9_.\-]+")
PULL_GRACE_SECONDS = 5.0


def consumer_name(owner: str) -> str:
    return CONSUMER_PREFIX + owner


def _status(msg: Msg) -> str | None:
    return msg.headers.get("Status") if msg.headers else None


class Inboxes:
    def __init__(self, nc: Client, js: JetStreamContext, *, ack_wait: float) -> None:
        self._nc = nc
        self._js = js
        self._ack_wait = ack_wait
        self._ready: set[str] = set()
        # This replica's view of who holds what, to hand a dead harness's messages to its successor at once.
        self._sessions: dict[str, str] = {}
        self._held: dict[str, set[str]] = {}

    async def ensure(self, owner: str) -> None:
        """Create the owner's durable consumer (idempotent); afterwards messages wait for it in the stream."""
        if owner in self._ready:
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

    async def take(self, owner: str, *, max_messages: int, wait: float, session: str) -> tuple[list[Message], int]:
        """Up to `max_messages` pending messages, waiting up to `wait` seconds for the first; and how many remain."""
        await self.ensure(owner)
        if session:
            previous = self._sessions.get(owner)
            self._sessions[owner] = session
            if previous is not None and previous != session:
                await self.release(owner, self._held.pop(owner, set()))
        msgs = await self._pull(owner, max_messages, wait)
        taken = [self._as_message(m) for m in msgs]
        self._held.setdefault(owner, set()).update(m.token for m in taken)
        unread = msgs[-1].metadata.num_pending if msgs else 0
        return taken, unread

    async def _pull(self, owner: str, batch: int, wait: float) -> list[Msg]:
        """One JetStream pull request with `no_wait`: the server sends what is pending now, or, when nothing is,
        holds the request up to `wait` seconds and pushes the first message the moment it is stored; then it ends
        the request with a status (404 or 408), so nothing is left lingering."""
        request: dict[str, object] = {"batch": batch, "no_wait": True}
        if wait > 0:
            request["expires"] = int(wait * 1e9)
        got: list[Msg] = []
        done = asyncio.get_running_loop().create_future()

        async def collect(msg: Msg) -> None:
            if _status(msg) is None:  # else 404 nothing more, 408 expired, 409 consumer changed
                got.append(msg)
            if (_status(msg) is not None or len(got) >= batch) and not done.done():
                done.set_result(None)

        # A subscription per pull: JetStream delivers under the message's own subject, so replies of several
        # pulls cannot share one wildcard subscription the way plain request replies do.
        reply = self._nc.new_inbox()
        sub = await self._nc.subscribe(reply, cb=collect)
        try:
            await self._nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{consumer_name(owner)}", json.dumps(request).encode(), reply=reply
            )
            await asyncio.wait_for(done, wait + PULL_GRACE_SECONDS)
        except TimeoutError:
            log.warning("owner=%s outcome=pull_unanswered", owner)
        finally:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        return got

    @staticmethod
    def _as_message(msg: Msg) -> Message:
        meta = msg.metadata
        stored = Message.model_validate_json(msg.data)
        return stored.model_copy(
            update={"token": msg.reply, "redelivered": meta.num_delivered > 1, "seq": meta.sequence.stream}
        )

    def _check_tokens(self, owner: str, tokens: list[str]) -> list[Msg.Metadata]:
        metas = []
        for token in tokens:
            try:
                if not TOKEN_PATTERN.fullmatch(token):
                    raise ValueError(token)
                meta = Msg.Metadata._from_reply(token)
            except (ValueError, IndexError):
                raise HiveError(ErrorCode.INVALID_REQUEST, f"{token[:80]!r} is not a delivery token.") from None
            if meta.stream != STREAM or meta.consumer != consumer_name(owner):
                raise HiveError(ErrorCode.NOT_ALLOWED, f"Token {token[:80]!r} is not for {owner}'s inbox.")
            metas.append(meta)
        return metas

    async def ack(self, owner: str, tokens: list[str]) -> list[int]:
        """Acknowledge delivered messages for good; return their stream sequences."""
        metas = self._check_tokens(owner, tokens)
        await self._signal(tokens, b"+ACK")
        self._held.get(owner, set()).difference_update(tokens)
        return [m.sequence.stream for m in metas]

    async def keep(self, owner: str, tokens: list[str]) -> None:
        """The harness is still working on these: restart their redelivery clock."""
        self._check_tokens(owner, tokens)
        await self._signal(tokens, b"+WPI")

    async def release(self, owner: str, tokens: set[str] | list[str]) -> None:
        """Hand messages back for immediate redelivery (their harness is gone)."""
        tokens = list(tokens)
        self._check_tokens(owner, tokens)
        # Wait for JetStream to confirm each NAK, so the pull that follows already sees the messages again.
        results = await asyncio.gather(
            *(self._nc.request(token, b"-NAK", timeout=2) for token in tokens), return_exceptions=True
        )
        for token, result in zip(tokens, results, strict=True):
            if isinstance(result, Exception):
                log.warning("owner=%s token=%s outcome=nak_unconfirmed error=%r", owner, token, result)
        if tokens:
            log.info("owner=%s released=%d outcome=redeliver", owner, len(tokens))

    async def _signal(self, tokens: list[str], verb: bytes) -> None:
        # No flush needed: the server reads a connection in order, so these acks reach JetStream before the
        # reply that tells the caller they were made.
        for token in tokens:
            await self._nc.publish(token, verb)

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
                    recent.append(
                        Message.model_validate_json(msg.data).model_copy(update={"seq": msg.metadata.sequence.stream})
                    )
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
                if Message.model_validate_json(raw.data).sent_at > cutoff:
                    break
                await self._js.delete_msg(STREAM, raw.seq)
                removed += 1
                seq = raw.seq + 1
        return removed
