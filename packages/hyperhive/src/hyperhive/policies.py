"""The applied agent policies in JetStream KV `hive-policy`, and the admitted tools in `hive-tools` (both written by
the spawner), followed by a watch.

Services that need to know which agents exist, or what one may do, keep a `PolicyBook`; the broker also keeps the
tools' `Book`: each is pushed every change, never polls, and can be waited on for a given bucket revision.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from contextlib import AsyncExitStack
from typing import Any, Generic, TypeVar

import nats.errors
from nats.aio.client import Client
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import BaseModel, ValidationError

from hyperhive import bus, runtime
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AgentPolicy, ToolGrant
from hyperhive.wire.names import MANAGER

log = logging.getLogger("hyperhive.policies")
Entry = TypeVar("Entry", bound=BaseModel)
AnyBook = TypeVar("AnyBook", bound="Book[Any]")
RETRY = 0.5  # seconds between attempts to make a watch while the connection is down
_ENDED = object()  # a watch's iterator that stopped


class Book(Generic[Entry]):
    """A KV bucket's entries as models, pushed every change (never polled), and waitable for a bucket revision.

    The watch is nats-py's ordered consumer, which mends a gap only at its own heartbeat check: after nats-server
    restarts, a change came some 20 s late, and a book that never caught up left a service blind to a new agent. So
    the book starts its watch afresh (`renew`) at every reconnect of its connection, and when a revision it is
    waited for has not come within `PATIENCE`; a new watch brings each key's latest value, so nothing is missed and
    a key deleted meanwhile is gone."""

    PATIENCE = 2.0  # seconds a waited-for revision may take before the watch is started afresh

    def __init__(self, model: type[Entry]) -> None:
        self._model = model
        self._entries: dict[str, Entry] = {}
        self.loaded = asyncio.Event()
        self.revision = 0
        self._changed = asyncio.Condition()
        self._kv: KeyValue | None = None
        self._renewed = asyncio.Event()

    async def follow(self, kv: KeyValue) -> None:
        """Apply every change of the bucket until cancelled, through a new watch each time one is renewed. A watch
        that cannot be made (the connection is down) is tried again: a book outlives its transport."""
        self._kv = kv
        while True:
            self._renewed.clear()
            try:
                watcher = await kv.watchall()
            except (nats.errors.Error, TimeoutError) as exc:
                log.warning("book=%s outcome=watch_failed error=%r", self._model.__name__, exc)
                await asyncio.sleep(RETRY)  # a timer before trying again, not a wait for a condition
                continue
            try:
                await self._apply(watcher)
            finally:
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    await watcher.stop()  # type: ignore[no-untyped-call]

    def renew(self) -> None:
        """Start the watch afresh: `follow` leaves the current one and makes a new one."""
        self._renewed.set()

    async def _apply(self, watcher: Any) -> None:
        """The watch's changes until it is renewed. Its first pass (up to the marker None) builds the entries anew,
        and they replace the book's at once, so a reader never sees half of them."""
        building: dict[str, Entry] | None = {}
        seen = 0
        renewed = asyncio.ensure_future(self._renewed.wait())
        try:
            while True:
                update = asyncio.ensure_future(anext(watcher, _ENDED))
                await asyncio.wait({update, renewed}, return_when=asyncio.FIRST_COMPLETED)
                if not update.done():
                    update.cancel()
                    return
                entry: Any = update.result()
                if entry is _ENDED:
                    return
                if entry is not None:
                    entries = self._entries if building is None else building
                    if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                        entries.pop(entry.key, None)
                    else:
                        try:
                            entries[entry.key] = self._model.model_validate_json(entry.value)
                        except ValidationError:
                            log.exception("key=%s outcome=bad_entry", entry.key)
                    seen = max(seen, entry.revision or 0)
                    if building is not None:
                        continue
                elif building is not None:
                    self._entries, building = building, None
                    self.loaded.set()
                async with self._changed:
                    self.revision = max(self.revision, seen)
                    self._changed.notify_all()
        finally:
            renewed.cancel()

    async def caught_up(self, revision: int) -> None:
        """Wait until the bucket change with this revision has been applied, renewing the watch each time it has
        not come within `PATIENCE`."""
        async with self._changed:
            while not await _within(self.PATIENCE, self._changed.wait_for(lambda: self.revision >= revision)):
                log.warning(
                    "book=%s revision=%d applied=%d outcome=late; renewing the watch",
                    self._model.__name__,
                    revision,
                    self.revision,
                )
                self.renew()

    def get(self, name: str) -> Entry | None:
        return self._entries.get(name)

    async def lookup(self, name: str) -> Entry | None:
        """`get`, or when the watch has not brought `name` yet, the bucket itself: an entry written a moment ago
        (a tool admitted just now) is found, not refused."""
        if (entry := self.get(name)) is not None or self._kv is None:
            return entry
        try:
            found = await self._kv.get(name)
        except (NotFoundError, KeyNotFoundError):
            return None
        return self._model.model_validate_json(found.value) if found.value else None


class PolicyBook(Book[AgentPolicy]):
    """The applied agent policies: which agents exist, and what each may do."""

    def __init__(self) -> None:
        super().__init__(AgentPolicy)

    def agents(self) -> list[str]:
        """Every agent of the hive; the manager always exists."""
        return sorted({MANAGER, *self._entries})

    def exists(self, name: str) -> bool:
        return name == MANAGER or name in self._entries


async def follow(stack: AsyncExitStack, nc: Client, stop: asyncio.Event | None) -> PolicyBook:
    """A `PolicyBook` kept current for the life of `stack`, returned once it holds every policy there is."""
    return await follow_bucket(stack, nc, stop, subjects.POLICY_BUCKET, PolicyBook())


async def follow_tools(stack: AsyncExitStack, nc: Client, stop: asyncio.Event | None) -> Book[ToolGrant]:
    """The admitted tools' grants, kept current for the life of `stack`."""
    return await follow_bucket(stack, nc, stop, subjects.TOOLS_BUCKET, Book(ToolGrant))


async def follow_bucket(
    stack: AsyncExitStack, nc: Client, stop: asyncio.Event | None, bucket: str, book: AnyBook
) -> AnyBook:
    """`book` following `bucket` over `nc` (renewed at each of its reconnects), once it holds the whole bucket."""
    try:
        kv = await nc.jetstream().key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        why = "every service declares the hive's streams and buckets at its start (`streams.declare`); is JetStream on?"
        raise HiveError(ErrorCode.UNAVAILABLE, f"The bucket {bucket!r} does not exist: {why}") from None
    runtime.background(stack, book.follow(kv), bucket, stop)
    bus.on_reconnect(nc, book.renew)
    try:
        await asyncio.wait_for(book.loaded.wait(), 30)
    except TimeoutError:
        raise HiveError(
            ErrorCode.UNAVAILABLE, f"The bucket {bucket!r} did not send its contents within 30 s."
        ) from None
    return book


async def _within(seconds: float, wait: Coroutine[Any, Any, bool]) -> bool:
    """Whether `wait` ended within `seconds` (a Condition's `wait_for` keeps its lock either way)."""
    try:
        return await asyncio.wait_for(wait, seconds)
    except TimeoutError:
        return False
