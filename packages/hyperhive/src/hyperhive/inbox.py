"""An agent's own side of its inbox: it pulls from its durable JetStream consumer and acknowledges what reached the
model, directly. The NATS permissions let each agent pull and ack only `inbox-<own name>`, so no service needs to
stand in the path of a delivery; the broker only stores what is sent, after the recipient policy agreed.

A message is acknowledged only when the harness says it reached the model, so a crash before that redelivers it.
The tokens a harness holds are kept in a file in its state dir: a restarted harness hands them back at once
(`recover`), and they come again marked `redelivered`. JetStream's ack_wait is the backstop for anything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import re
from pathlib import Path

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from pydantic import ValidationError

from hyperhive import bus, events
from hyperhive.backoff import ride_out
from hyperhive.files import read_untrusted, write_atomic
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import MAX_RECV_BATCH, MAX_RECV_WAIT_SECONDS, Empty, Message, MessageDelivered
from hyperhive.wire.names import OPERATOR

log = logging.getLogger("hyperhive.inbox")

STREAM = subjects.INBOX_STREAM
TOKEN_PATTERN = re.compile(r"\$JS\.ACK\.[A-Za-z0-9_.\-]+")
PULL_GRACE_SECONDS = 5.0
KEEP_ALIVE_SECONDS = 20.0  # the broker's inbox ack_wait is 120 s by default
RECONNECTED = "reconnected"  # how a pull's wait ends when the connection came back


def consumer_name(owner: str) -> str:
    return f"inbox-{owner}"


def _status(msg: Msg) -> str | None:
    return msg.headers.get("Status") if msg.headers else None


class Handled:
    """The ids of the messages an owner has had (the newest `keep`), kept in a file: when nats-server dies, the acks
    of its last moments can be lost, and JetStream then brings such a message again as if it were new (not marked
    redelivered). `Inbox.take` acknowledges it again and hands it to nobody a second time. A harness shares one
    record between its turns and its `recv` tool."""

    def __init__(self, path: Path | None = None, keep: int = 2000) -> None:
        self._path = path
        self._keep = keep
        self._ids: dict[str, None] = dict.fromkeys(self._load())

    def _load(self) -> list[str]:
        if self._path is None:
            return []
        try:
            ids = json.loads(read_untrusted(self._path) or "[]")  # in the agent's state dir: maybe its writing
        except ValueError:
            return []
        return [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else []

    def __contains__(self, message_id: str) -> bool:
        return message_id in self._ids

    def add(self, ids: list[str]) -> None:
        for message_id in ids:
            self._ids.pop(message_id, None)
            self._ids[message_id] = None
        for old in list(self._ids)[: max(0, len(self._ids) - self._keep)]:
            del self._ids[old]
        if self._path is not None and ids:
            write_atomic(self._path, json.dumps(list(self._ids)))


class Inbox:
    """The inbox of `owner` (an agent, or `operator`), as its harness (or the operator's tools) reads it."""

    def __init__(
        self, nc: Client, owner: str, *, held_file: Path | None = None, handled: Handled | None = None
    ) -> None:
        self.nc = nc
        self.owner = owner
        self.held_file = held_file
        self._held: dict[str, str] = {}  # what is taken and not acked: token → message id
        self._handled = handled if handled is not None else Handled()
        bus.on_reconnect(nc, self._reconnected)
        self._pulling = asyncio.Lock()
        self._replies: Subscription | None = None
        self._reply_subject = ""
        self._got: list[Msg] = []
        self._batch = 0
        self._done: asyncio.Future[str | None] | None = None

    async def open(self) -> None:
        """Make sure the inbox exists (the broker creates its consumer), then hand back what an earlier harness
        held and never acknowledged."""
        subject = (
            subjects.operator(subjects.BROKER, subjects.OPEN)
            if self.owner == OPERATOR
            else subjects.agent(self.owner, subjects.OPEN)
        )
        await bus.call(self.nc, subject, Empty(), Empty)
        await self.release(self._stale())

    def _stale(self) -> list[str]:
        """The tokens an earlier harness kept. The file is in the agent's state dir, so the agent may have written
        it: what is not a token of this inbox is left out, never a reason not to start."""
        if self.held_file is None:
            return []
        try:
            stale = json.loads(read_untrusted(self.held_file) or "[]")
        except ValueError as exc:
            log.warning("owner=%s file=%s outcome=unreadable_held_tokens error=%r", self.owner, self.held_file, exc)
            return []
        tokens = []
        for token in stale if isinstance(stale, list) else []:
            try:
                self._check([token])
            except (HiveError, TypeError):
                continue
            tokens.append(token)
        return tokens

    async def take(self, *, max_messages: int = 8, wait: float = 0) -> tuple[list[Message], int]:
        """Up to `max_messages` pending messages, waiting up to `wait` seconds for the first; and how many remain.

        One JetStream pull with `no_wait`: the server sends what is pending now, or, when nothing is, holds the
        request up to `wait` seconds and pushes the first message the moment it is stored; then it ends the request
        with a status, so nothing is left lingering."""
        if not 1 <= max_messages <= MAX_RECV_BATCH:
            raise HiveError(ErrorCode.INVALID_REQUEST, f"max must be 1-{MAX_RECV_BATCH}, not {max_messages}.")
        if not 0 <= wait <= MAX_RECV_WAIT_SECONDS:
            raise HiveError(ErrorCode.INVALID_REQUEST, f"wait_seconds must be 0-{MAX_RECV_WAIT_SECONDS}, not {wait}.")
        msgs = await self._pull(max_messages, wait)
        taken = []
        for msg in msgs:
            try:
                message = self._as_message(msg)
            except ValidationError as exc:  # never stored by the broker: set aside, so it does not come again
                about = None if self.owner == OPERATOR else self.owner  # the operator's tools publish no events
                await bus.set_aside(self.nc, msg, f"not a Message: {exc.errors()[0]['msg']}", about=about)
                continue
            if message.id in self._handled:  # had already, its ack lost: acknowledged again, handed to nobody
                log.warning("owner=%s message=%s seq=%d outcome=duplicate_dropped", self.owner, message.id, message.seq)
                with contextlib.suppress(nats.errors.Error):  # confirmed: it must not come back after ack_wait
                    await self.nc.request(message.token, b"+ACK", timeout=2)
                continue
            taken.append(message)
        self._hold(add={m.token: m.id for m in taken})
        return taken, msgs[-1].metadata.num_pending if msgs else 0

    async def _pull(self, batch: int, wait: float) -> list[Msg]:
        async with self._pulling:  # one pull at a time per inbox: the replies of one pull are told apart by that
            if self._replies is None:
                self._reply_subject = self.nc.new_inbox()
                self._replies = await self.nc.subscribe(self._reply_subject, cb=self._collect)
            deadline = asyncio.get_running_loop().time() + wait + PULL_GRACE_SECONDS
            try:  # no responders (503): no inbox, or its consumer's import being re-wired by a reload for a moment
                return await ride_out(functools.partial(self._ask, batch, wait, deadline))
            except nats.errors.NoRespondersError:
                raise HiveError(
                    ErrorCode.UNAVAILABLE, f"The inbox of {self.owner} is not open; call open() first."
                ) from None

    async def _ask(self, batch: int, wait: float, deadline: float) -> list[Msg]:
        """One pull until `deadline`, asked again for the time left if the connection comes back meanwhile (the
        server may have lost it: a restart)."""
        request: dict[str, object] = {"batch": batch, "no_wait": True}
        self._got, self._batch = [], batch
        loop = asyncio.get_running_loop()
        try:
            while True:
                self._done = loop.create_future()
                if wait > 0:
                    left = max(0.0, deadline - PULL_GRACE_SECONDS - loop.time())
                    request["expires"] = max(int(left * 1e9), 1_000_000)
                await self.nc.publish(
                    f"$JS.API.CONSUMER.MSG.NEXT.{STREAM}.{consumer_name(self.owner)}",
                    json.dumps(request).encode(),
                    reply=self._reply_subject,
                )
                try:
                    status = await asyncio.wait_for(self._done, max(0.0, deadline - loop.time()))
                except TimeoutError:
                    status = None
                if status != RECONNECTED:
                    break
        finally:
            self._done = None
        if status == "503" and not self._got:
            raise nats.errors.NoRespondersError
        return self._got

    def _reconnected(self) -> None:
        """The connection is back: a pull under way may be lost with the server that held it; end its wait."""
        if self._done is not None and not self._done.done():
            self._done.set_result(RECONNECTED)

    async def _collect(self, msg: Msg) -> None:
        status = _status(msg)  # 404 nothing more, 408 expired, 409 consumer changed, 503 no inbox
        if self._done is None or self._done.done():
            if status is None:  # a straggler after its pull gave up: hand it back rather than sit on it
                await self.nc.publish(msg.reply, b"-NAK")
            return
        if status is None:
            self._got.append(msg)
        if status is not None or len(self._got) >= self._batch:
            self._done.set_result(status)

    @staticmethod
    def _as_message(msg: Msg) -> Message:
        meta = msg.metadata
        return Message.model_validate_json(msg.data).model_copy(
            update={"token": msg.reply, "redelivered": meta.num_delivered > 1, "seq": meta.sequence.stream}
        )

    def _check(self, tokens: list[str]) -> list[int]:
        seqs = []
        for token in tokens:
            try:
                if not TOKEN_PATTERN.fullmatch(token):
                    raise ValueError(token)
                meta = Msg.Metadata._from_reply(token)
            except (ValueError, IndexError):
                raise HiveError(ErrorCode.INVALID_REQUEST, f"{token[:80]!r} is not a delivery token.") from None
            if meta.stream != STREAM or meta.consumer != consumer_name(self.owner):
                raise HiveError(ErrorCode.NOT_ALLOWED, f"Token {token[:80]!r} is not for {self.owner}'s inbox.")
            seqs.append(meta.sequence.stream)
        return seqs

    async def ack(self, tokens: list[str]) -> int:
        """These reached the model: they will not come again."""
        seqs = self._check(tokens)
        # JetStream takes a consumer's acks in order, so confirming the last confirms them all: once this returns,
        # what was acked no longer holds space the broker may need (and nobody sees it pending). An unconfirmed
        # one only means the message may come again (at least once, never lost); the handled record drops it.
        for token in tokens[:-1]:
            await self.nc.publish(token, b"+ACK")
        if tokens:
            try:
                await self.nc.request(tokens[-1], b"+ACK", timeout=2)
            except nats.errors.Error as exc:
                log.warning("owner=%s outcome=ack_unconfirmed error=%r", self.owner, exc)
        self._handled.add([i for i in self._hold(drop=tokens) if i])
        if seqs and self.owner != OPERATOR:
            delivered = MessageDelivered(owner=self.owner, seqs=seqs)
            await events.publish(self.nc, "message_delivered", delivered, about=self.owner, by_agent=True)
        return len(tokens)

    async def keep(self, tokens: list[str]) -> None:
        """Still being worked on: restart their redelivery clock."""
        self._check(tokens)
        for token in tokens:
            await self.nc.publish(token, b"+WPI")
        await self.nc.flush()

    async def keep_alive(self, every: float = KEEP_ALIVE_SECONDS) -> None:
        """For as long as it runs: restart the redelivery clock of what is taken and not yet acknowledged (messages
        held while the agent is paused, or handed out by `recv` and not acked yet), so ack_wait never brings them
        again to someone who still has them."""
        while True:
            await asyncio.sleep(every)  # a timer: shorter than any ack_wait the broker gives an inbox
            if self._held:
                with contextlib.suppress(nats.errors.Error, HiveError):
                    await self.keep(sorted(self._held))

    async def release(self, tokens: list[str]) -> None:
        """Hand messages back for immediate redelivery, waiting for JetStream to confirm each."""
        self._check(tokens)
        results = await asyncio.gather(
            *(self.nc.request(token, b"-NAK", timeout=2) for token in tokens), return_exceptions=True
        )
        for token, result in zip(tokens, results, strict=True):
            if isinstance(result, Exception):
                log.warning("owner=%s token=%s outcome=nak_unconfirmed error=%r", self.owner, token, result)
        self._hold(drop=tokens)

    def _hold(self, *, add: dict[str, str] | None = None, drop: list[str] | None = None) -> list[str]:
        """Record what is taken (token → message id) and what is no longer held; keep the tokens in the held file.
        Returns the ids of what was dropped."""
        self._held.update(add or {})
        dropped = [self._held.pop(token, "") for token in drop or []]
        if self.held_file is not None and (add or drop):
            write_atomic(self.held_file, json.dumps(sorted(self._held)))
        return dropped
