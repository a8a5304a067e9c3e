"""The applied agent policies in JetStream KV `hive-policy`, and the admitted tools in `hive-tools` (both written by
the spawner), followed by a watch.

Services that need to know which agents exist, or what one may do, keep a `PolicyBook`; the broker also keeps the
tools' `Book`: each is pushed every change, never polls, and can be waited on for a given bucket revision.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack
from typing import Any, Generic, TypeVar

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, KeyNotFoundError, NotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import BaseModel, ValidationError

from hyperhive import runtime
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AgentPolicy, ToolGrant
from hyperhive.wire.names import MANAGER

log = logging.getLogger("hyperhive.policies")
Entry = TypeVar("Entry", bound=BaseModel)
AnyBook = TypeVar("AnyBook", bound="Book[Any]")


class Book(Generic[Entry]):
    """A KV bucket's entries as models, pushed every change (never polled), and waitable for a bucket revision."""

    def __init__(self, model: type[Entry]) -> None:
        self._model = model
        self._entries: dict[str, Entry] = {}
        self.loaded = asyncio.Event()
        self.revision = 0
        self._changed = asyncio.Condition()
        self._kv: KeyValue | None = None

    async def follow(self, kv: KeyValue) -> None:
        """Apply every change of the bucket until cancelled."""
        self._kv = kv
        watcher = await kv.watchall()
        try:
            async for entry in watcher:
                if entry is None:
                    self.loaded.set()
                    continue
                if entry.operation in (KV_DEL, KV_PURGE) or not entry.value:
                    self._entries.pop(entry.key, None)
                else:
                    try:
                        self._entries[entry.key] = self._model.model_validate_json(entry.value)
                    except ValidationError:
                        log.exception("key=%s outcome=bad_entry", entry.key)
                async with self._changed:
                    self.revision = max(self.revision, entry.revision or 0)
                    self._changed.notify_all()
        finally:
            await watcher.stop()  # type: ignore[no-untyped-call]

    async def caught_up(self, revision: int) -> None:
        """Wait until the bucket change with this revision has been applied."""
        async with self._changed:
            await self._changed.wait_for(lambda: self.revision >= revision)

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


async def follow(stack: AsyncExitStack, js: JetStreamContext, stop: asyncio.Event | None) -> PolicyBook:
    """A `PolicyBook` kept current for the life of `stack`, returned once it holds every policy there is."""
    return await follow_bucket(stack, js, stop, subjects.POLICY_BUCKET, PolicyBook())


async def follow_tools(stack: AsyncExitStack, js: JetStreamContext, stop: asyncio.Event | None) -> Book[ToolGrant]:
    """The admitted tools' grants, kept current for the life of `stack`."""
    return await follow_bucket(stack, js, stop, subjects.TOOLS_BUCKET, Book(ToolGrant))


async def follow_bucket(
    stack: AsyncExitStack, js: JetStreamContext, stop: asyncio.Event | None, bucket: str, book: AnyBook
) -> AnyBook:
    try:
        kv = await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        why = "every service declares the hive's streams and buckets at its start (`streams.declare`); is JetStream on?"
        raise HiveError(ErrorCode.UNAVAILABLE, f"The bucket {bucket!r} does not exist: {why}") from None
    runtime.background(stack, book.follow(kv), bucket, stop)
    try:
        await asyncio.wait_for(book.loaded.wait(), 30)
    except TimeoutError:
        raise HiveError(
            ErrorCode.UNAVAILABLE, f"The bucket {bucket!r} did not send its contents within 30 s."
        ) from None
    return book
