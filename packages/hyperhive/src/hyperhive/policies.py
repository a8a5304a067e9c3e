"""The applied agent policies in JetStream KV `hive-policy` (written by the spawner), followed by a watch.

Services that need to know which agents exist, or what one may do, keep a `PolicyBook`: it is pushed every change,
never polls, and can be waited on for a given bucket revision.
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from nats.js import JetStreamContext
from nats.js.errors import BucketNotFoundError, NotFoundError
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue
from pydantic import ValidationError

from hyperhive import runtime
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AgentPolicy
from hyperhive.wire.names import MANAGER

log = logging.getLogger("hyperhive.policies")


class PolicyBook:
    def __init__(self) -> None:
        self._policies: dict[str, AgentPolicy] = {}
        self.loaded = asyncio.Event()
        self.revision = 0
        self._changed = asyncio.Condition()

    async def follow(self, kv: KeyValue) -> None:
        """Apply every change of the bucket until cancelled."""
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

    def get(self, name: str) -> AgentPolicy | None:
        return self._policies.get(name)

    def agents(self) -> list[str]:
        """Every agent of the hive; the manager always exists."""
        return sorted({MANAGER, *self._policies})

    def exists(self, name: str) -> bool:
        return name == MANAGER or name in self._policies


async def follow(stack: AsyncExitStack, js: JetStreamContext, stop: asyncio.Event | None) -> PolicyBook:
    """A `PolicyBook` kept current for the life of `stack`, returned once it holds every policy there is."""
    book = PolicyBook()
    bucket = subjects.POLICY_BUCKET
    try:
        kv = await js.key_value(bucket)
    except (BucketNotFoundError, NotFoundError):
        why = "every service declares the hive's streams and buckets at its start (`streams.declare`); is JetStream on?"
        raise HiveError(ErrorCode.UNAVAILABLE, f"The policy bucket {bucket!r} does not exist: {why}") from None
    runtime.background(stack, book.follow(kv), "policy", stop)
    try:
        await asyncio.wait_for(book.loaded.wait(), 30)
    except TimeoutError:
        raise HiveError(
            ErrorCode.UNAVAILABLE, f"The policy bucket {bucket!r} did not send its contents within 30 s."
        ) from None
    return book
