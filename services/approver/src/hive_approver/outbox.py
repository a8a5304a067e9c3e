"""The approver's transactional outbox: a decision, the events it calls for and its spawner command are written to
PostgreSQL together (`Store.transition(then=…)`); this publishes what was written, in order, and deletes each row
only once JetStream has acknowledged it. An approver killed in between publishes the rest at its next start; NATS or
the database being away is waited out.

Events go without a de-duplication id (agents publish into the same events stream and could claim one first), so a
crash between a publish and its row's delete can publish an event twice: at least once, never lost. Spawner commands
keep `approval-<id>`: only host services write their queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from hive_approver.store import OutboxRows
from hyperhive.backoff import Backoff
from hyperhive.wire.errors import ErrorCode, HiveError

log = logging.getLogger("hive_approver.outbox")

RETRY_SECONDS = 0.5
RETRY_MAX_SECONDS = 10.0


class Outbox:
    def __init__(self, rows: OutboxRows, js: JetStreamContext) -> None:
        self._rows = rows
        self._js = js
        self._draining = asyncio.Lock()
        self._more = asyncio.Event()

    async def drain(self) -> None:
        """Publish every row there is, oldest first, each deleted once JetStream has it."""
        async with self._draining:
            while rows := await self._rows.oldest():
                for row in rows:
                    headers = {"Nats-Msg-Id": row["msg_id"]} if row["msg_id"] else None
                    await self._js.publish(row["subject"], bytes(row["body"]), headers=headers)
                    await self._rows.done(row["id"])

    async def flush(self) -> None:
        """After a commit: publish now if we can (the usual case, so events are prompt); else the background does."""
        try:
            await self.drain()
        except (HiveError, nats.errors.Error, nats.js.errors.Error) as exc:
            log.warning("outcome=outbox_deferred error=%r", exc)
            self._more.set()

    async def run(self) -> None:
        """For the life of the approver: drain at start (what a killed one left), then whenever a flush could not,
        retrying with back-off while NATS or the database is away."""
        backoff = Backoff(RETRY_SECONDS, RETRY_MAX_SECONDS)
        while True:
            self._more.clear()
            try:
                await self.drain()
                backoff.succeeded()
                await self._more.wait()
            except (HiveError, nats.errors.Error, nats.js.errors.Error) as exc:
                if isinstance(exc, HiveError) and exc.code != ErrorCode.UNAVAILABLE:
                    raise
                delay = backoff.failed()
                log.warning("outcome=outbox_retry retry_in=%.1fs error=%r", delay, exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._more.wait(), delay)
