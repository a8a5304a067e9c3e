"""The recorder: HIVE_STATS into PostgreSQL's `stats`, a batch at a time, through the dashboard's durable pull
consumer; and the retention that deletes what is older than `HIVE_DASHBOARD_STATS_DAYS`.

A batch is acknowledged only after its commit, so a recorder killed anywhere loses nothing: what it had not
acknowledged comes again. What comes again and was committed already is written once: the batch's stream sequences
are recorded in `stats_samples` in the same transaction (`ON CONFLICT DO NOTHING RETURNING`), and only the rows of
those new there are copied in. A message that is not a sample is logged and acknowledged with
its batch, so nothing an agent publishes can stop the recorder.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api

from hive_dashboard.stats import BadSample, Row, rows_of
from hyperhive.backoff import Backoff
from hyperhive.wire import subjects

log = logging.getLogger("hive_dashboard.recorder")

CONSUMER = "dashboard-stats"
BATCH = 1000
ACK_WAIT_SECONDS = 10.0
"""How soon what a killed recorder had not acknowledged comes again (a batch is written in milliseconds)."""
FETCH_SECONDS = 5.0
RETENTION_EVERY_SECONDS = 3600.0
SAMPLES_KEPT_SECONDS = 2 * 86400.0
"""How long a written sample's sequence is remembered: twice what HIVE_STATS keeps a message."""
NEW_SAMPLES = """
INSERT INTO stats_samples (seq, ts) SELECT * FROM unnest($1::int8[], $2::timestamptz[])
ON CONFLICT DO NOTHING RETURNING seq
"""
COLUMNS = ("agent", "key", "ts", "value")


async def insert(conn: asyncpg.Connection | asyncpg.pool.PoolConnectionProxy[asyncpg.Record], rows: list[Row]) -> int:
    """Write the rows of the samples not written yet (call it in a transaction): which ones are new is asked of
    `stats_samples` in one statement, and their rows go in by COPY. Returns how many rows were written."""
    samples = {(row[3], row[2]) for row in rows}
    found = await conn.fetch(NEW_SAMPLES, [seq for seq, _ in samples], [ts for _, ts in samples])
    new = {r["seq"] for r in found}
    fresh = [(agent, key, ts, value) for agent, key, ts, seq, value in rows if seq in new]
    if fresh:
        await conn.copy_records_to_table("stats", records=fresh, columns=COLUMNS)
    return len(fresh)


class Recorder:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        pool: asyncpg.Pool,
        keep_days: float,
        recorded: Callable[[set[str]], None] = lambda agents: None,
    ) -> None:
        self.nc = nc
        self.js = js
        self.pool = pool
        self.keep_days = keep_days
        self.recorded = recorded  # told which agents have new rows, once they are committed (the live pages)

    async def subscribe(self) -> JetStreamContext.PullSubscription:
        """The dashboard's durable consumer of the whole stream, made at its first start and kept."""
        config = js_api.ConsumerConfig(
            durable_name=CONSUMER,
            # Each message is acked by itself: "all" would let a batch's last ack also acknowledge an earlier batch
            # delivered again after a crash and not written yet.
            ack_policy=js_api.AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_SECONDS,
            max_ack_pending=4 * BATCH,
            deliver_policy=js_api.DeliverPolicy.ALL,
        )
        with contextlib.suppress(nats.js.errors.BadRequestError):  # it exists already
            await self.js.add_consumer(subjects.STATS_STREAM, config=config)
        return await self.js.pull_subscribe_bind(durable=CONSUMER, stream=subjects.STATS_STREAM)

    async def run(self) -> None:
        """For the life of the dashboard: pull, write, acknowledge. NATS or PostgreSQL away is waited out (a batch
        not written is not acknowledged, and is written when they are back)."""
        sub = await self.subscribe()
        backoff = Backoff(0.5, 10.0)
        while True:
            try:
                msgs = await sub.fetch(BATCH, timeout=FETCH_SECONDS)
            except nats.errors.TimeoutError:
                continue
            except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
                log.warning("outcome=fetch_failed error=%r; pulling again", exc)
                await asyncio.sleep(backoff.failed())
                continue
            while msgs:  # a pull can end with nothing but a status
                try:
                    await self.write(msgs)
                    backoff.succeeded()
                    break
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, nats.errors.Error) as exc:
                    delay = backoff.failed()
                    log.warning("outcome=write_failed samples=%d retry_in=%.1fs error=%r", len(msgs), delay, exc)
                    await asyncio.sleep(delay)
                except Exception:  # a bug must not end the recorder either: the batch is not acked, and comes again
                    log.exception("outcome=write_failed samples=%d; leaving the batch to come again", len(msgs))
                    break

    async def write(self, msgs: list[Msg]) -> None:
        """One batch: its rows in one transaction, then each message's acknowledgement (confirmed by a flush)."""
        rows: list[Row] = []
        bad = 0
        for msg in msgs:
            meta = msg.metadata
            try:
                rows += rows_of(msg.subject, msg.data, meta.sequence.stream, meta.timestamp)
            except BadSample as exc:
                bad += 1
                log.warning(
                    "stream=%s seq=%d subject=%s outcome=bad_sample error=%s",
                    meta.stream,
                    meta.sequence.stream,
                    msg.subject[:120],
                    exc,
                )
        first, last = msgs[0].metadata.sequence.stream, msgs[-1].metadata.sequence.stream
        log.info("event=writing samples=%d rows=%d seq=%d-%d", len(msgs), len(rows), first, last)
        async with self.pool.acquire() as conn, conn.transaction():
            new = await insert(conn, rows)
        log.info("event=committed samples=%d new=%d seq=%d-%d", len(msgs), new, first, last)
        for msg in msgs:
            await msg.ack()
        await self.nc.flush(timeout=5)
        log.info(
            "event=recorded samples=%d rows=%d new=%d bad=%d seq=%d-%d", len(msgs), len(rows), new, bad, first, last
        )
        if new:
            self.recorded({row[0] for row in rows})

    async def retention(self) -> None:
        """Delete what is older than `keep_days`, at start and every hour."""
        while True:
            try:
                async with self.pool.acquire() as conn:
                    deleted = await conn.execute(
                        "DELETE FROM stats WHERE ts < now() - make_interval(secs => $1)", self.keep_days * 86400
                    )
                    await conn.execute(  # nothing older than the stream keeps can come again
                        "DELETE FROM stats_samples WHERE ts < now() - make_interval(secs => $1)", SAMPLES_KEPT_SECONDS
                    )
                log.info("event=retention deleted=%s keep_days=%g", deleted.rsplit(" ", 1)[1], self.keep_days)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                log.warning("outcome=retention_failed error=%r", exc)
            await asyncio.sleep(RETENTION_EVERY_SECONDS)
