"""The live feed: HIVE_EVENTS as server-sent events, each with `id:` its stream sequence.

A page loads a snapshot that says which sequence it is as of (`as_of`, read before the snapshot's data, so nothing
that happens while it is read is missed), then opens `/events?after=<as_of>`; the browser's own reconnect sends
`Last-Event-ID`, and the feed resumes right after it. Every handler on the page is idempotent (an event sets a
row's state), and the page drops an id it has applied already, so a resume neither misses nor doubles anything.
When the events after a resume point are gone (the stream keeps 7 days), the feed says `resync` and the page loads
a new snapshot.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from sse_starlette import ServerSentEvent

from hyperhive.wire import subjects
from hyperhive.wire.names import OPERATOR

log = logging.getLogger("hive_dashboard.live")

HEAVY = frozenset({"turn"})
"""Kinds only an agent page asks for (a turn's stream-json events): the home page never needs them."""
MAX_QUEUED = 10_000
RETRY_MS = 1000
"""How soon a browser tries again after losing the stream (its own default is a few seconds)."""


async def as_of(js: JetStreamContext) -> int:
    """The last sequence of HIVE_EVENTS: a snapshot read after this is at least as new as it."""
    return int((await js.stream_info(subjects.EVENTS_STREAM)).state.last_seq)


def resume_point(last_event_id: str | None, after: str | None) -> int:
    """Where a feed starts: after the browser's `Last-Event-ID` (a reconnect), else after the snapshot's `after`."""
    for raw in (last_event_id, after):
        if raw is not None and raw.strip():
            value = raw.strip()
            if not value.isdigit() or len(value) > 19:
                raise ValueError(f"{value[:40]!r} is not a stream sequence (a whole number).")
            return int(value)
    raise ValueError("Say where the feed starts: `after` (the snapshot's `as_of`) or a Last-Event-ID header.")


def wanted(event: dict[str, Any], agent: str | None) -> bool:
    """The home page gets every kind but the heavy ones; an agent page gets those of its agent too."""
    if event.get("type") not in HEAVY:
        return True
    return agent is not None and event.get("agent") == agent


@dataclass(frozen=True)
class Recorded:
    """The recorder committed new stats rows of these agents (`*`: the hive's): the pages showing them read again."""

    agents: frozenset[str]


Item = Msg | Recorded | None


class Feeds:
    """The feeds being served, so that a stopping dashboard ends them at once (uvicorn waits for every open
    response before it stops; an endless stream would hold it up until its grace period runs out), and so that the
    recorder can tell them of new stats."""

    def __init__(self) -> None:
        self.queues: set[asyncio.Queue[Item]] = set()

    def end_all(self) -> None:
        for queue in self.queues:
            _end(queue)

    def recorded(self, agents: set[str]) -> None:
        for queue in self.queues:
            if not queue.full():  # a feed that full is about to end and resume anyway
                queue.put_nowait(Recorded(frozenset(agents)))


def _end(queue: asyncio.Queue[Item]) -> None:
    """Tell a feed to end: `None` in its queue, making room for it if the queue is full."""
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(None)


async def feed(
    nc: Client, js: JetStreamContext, after: int, agent: str | None, feeds: Feeds
) -> AsyncIterator[ServerSentEvent]:
    """Every event after sequence `after`, as it is stored, until the client goes; and, without ids (the inboxes are
    another stream), every new message to the operator (`message`) and which other inbox grew (`queued`). The page
    reads the operator's inbox and the depths again at each `hello`, which comes once everything is subscribed, so
    what was sent while it was away is not missed."""
    state = (await js.stream_info(subjects.EVENTS_STREAM)).state
    if after > state.last_seq or state.first_seq > after + 1:
        # The stream was made anew, or what came after `after` has aged out: the page's snapshot is too old.
        yield ServerSentEvent(event="resync", data=json.dumps({"as_of": int(state.last_seq)}))
        return
    queue: asyncio.Queue[Item] = asyncio.Queue(MAX_QUEUED)

    async def take(msg: Msg) -> None:
        if queue.full():  # the client reads slower than the hive writes: it ends, and resumes by Last-Event-ID
            _end(queue)
        else:
            queue.put_nowait(msg)

    events = await js.subscribe(
        ">",
        stream=subjects.EVENTS_STREAM,
        ordered_consumer=True,
        deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
        config=js_api.ConsumerConfig(opt_start_seq=after + 1),
        cb=take,
    )
    messages = await nc.subscribe(f"{subjects.INBOX_PREFIX}.>", cb=take)
    operator = subjects.inbox(OPERATOR)
    feeds.queues.add(queue)
    try:
        yield ServerSentEvent(event="hello", retry=RETRY_MS, data=json.dumps({"after": after}))
        while (msg := await queue.get()) is not None:
            if isinstance(msg, Recorded):
                if agent is None or agent in msg.agents:  # no id: stats are read again, not replayed
                    yield ServerSentEvent(event="stats", data=json.dumps({"agents": sorted(msg.agents)}))
                continue
            if msg.subject == operator:
                yield ServerSentEvent(event="message", data=msg.data.decode(errors="replace"))
                continue
            if msg.subject.startswith(f"{subjects.INBOX_PREFIX}."):
                # Another inbox grew: only whose, never what (an agent's messages are not the page's to show here).
                yield ServerSentEvent(event="queued", data=json.dumps({"owner": msg.subject.rsplit(".", 1)[1]}))
                continue
            if (sent := _event(msg, agent)) is not None:
                yield sent
    finally:
        feeds.queues.discard(queue)
        for sub in (events, messages):
            try:
                await sub.unsubscribe()
            except nats.errors.Error as exc:
                log.info("outcome=unsubscribe_failed error=%r", exc)


def _event(msg: Msg, agent: str | None) -> ServerSentEvent | None:
    seq = msg.metadata.sequence.stream
    try:
        event = json.loads(msg.data)
    except ValueError:
        log.warning("stream=%s seq=%d outcome=unreadable_event", subjects.EVENTS_STREAM, seq)
        return None
    if not isinstance(event, dict) or not wanted(event, agent):
        return None
    return ServerSentEvent(id=str(seq), event="hive", data=json.dumps({"seq": seq, "event": event}))
