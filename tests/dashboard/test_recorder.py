"""The recorder killed with SIGKILL, as a real dashboard process: once in the middle of writing a batch (held there
by a lock on the table, so the kill lands mid-batch every time), once right after a commit; started again, it ends
with every sample's rows written exactly once."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from hive_dashboard.stats import rows_of
from hivetest.hive import TestHive
from hyperhive import bus
from hyperhive.process import SERVICE_READY, Child
from hyperhive.wire import subjects
from hyperhive.wire.models import ApprovalQueue

SAMPLES = 3000


class Dashboard:
    """`python -m hive_dashboard` whose log lines come to the test as they are printed (no polling)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.lines: asyncio.Queue[str] = asyncio.Queue()
        self.child: Child | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        child = Child(
            "dashboard",
            [sys.executable, "-m", "hive_dashboard"],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env},
            on_line=lambda line: loop.call_soon_threadsafe(self.lines.put_nowait, line),
        )
        self.child = child.start()
        await asyncio.to_thread(child.wait_for, SERVICE_READY, 30)

    async def line(self, text: str, timeout: float = 60) -> str:
        async with asyncio.timeout(timeout):
            while text not in (line := await self.lines.get()):
                pass
        return line

    async def written(self, rows: int, timeout: float = 60) -> None:
        """Until the recorder says it has written `rows` new rows since it started."""
        async with asyncio.timeout(timeout):
            while rows > 0:
                line = await self.line("event=recorded")
                rows -= int(line.split(" new=")[1].split()[0])

    def kill(self) -> None:
        assert self.child is not None
        os.kill(self.child.pid, signal.SIGKILL)
        self.child.stop()
        self.lines = asyncio.Queue()


@pytest.fixture
async def dashboard_process(hive: TestHive, database_url: str, tmp_path: Path) -> AsyncIterator[Dashboard]:
    env = {
        **hive.service_env(subjects.DASHBOARD),
        "HIVE_DATABASE_URL": database_url,
        "HIVE_STATE_DIR": str(tmp_path / "hive-state"),
        "HIVE_DASHBOARD_PORT": "0",
    }
    dashboard = Dashboard(env)
    yield dashboard
    if dashboard.child is not None:
        dashboard.child.stop()


async def rows_in(conn: asyncpg.Connection) -> tuple[int, int]:
    rows = await conn.fetchval("SELECT count(*) FROM stats")
    return int(rows), int(await conn.fetchval("SELECT count(*) FROM stats_samples"))


async def test_a_recorder_killed_mid_batch_and_after_a_commit_loses_nothing_and_doubles_nothing(
    hive: TestHive, database_url: str, dashboard_process: Dashboard
) -> None:
    js = (await hive.connect(subjects.APPROVER)).jetstream()
    expected = 0
    for i in range(SAMPLES):  # stored (acknowledged by JetStream) before the recorder ever runs
        ack = await js.publish(subjects.APPROVAL_QUEUE, bus.encode(ApprovalQueue(pending=i)))
        expected += len(
            rows_of(subjects.APPROVAL_QUEUE, bus.encode(ApprovalQueue(pending=i)), ack.seq, datetime.now(UTC))
        )
    db = await asyncpg.connect(database_url)
    try:
        # 1. Killed in the middle of a batch: its insert waits on the lock, nothing of it committed or acked.
        lock = db.transaction()
        await lock.start()
        await db.execute("LOCK TABLE stats IN EXCLUSIVE MODE")
        await dashboard_process.start()
        await dashboard_process.line("event=writing")
        dashboard_process.kill()
        await lock.rollback()
        assert await rows_in(db) == (0, 0)

        # 2. Started again, and killed right after its first commit (before or while it acknowledges the batch).
        await dashboard_process.start()
        await dashboard_process.line("event=committed")
        dashboard_process.kill()
        so_far, _ = await rows_in(db)
        assert so_far > 0

        # 3. Started again: what was not acknowledged comes again; the rows end up written once each.
        await dashboard_process.start()
        await dashboard_process.written(expected - so_far)
        info = await js.consumer_info(subjects.STATS_STREAM, "dashboard-stats")
        if info.num_ack_pending:  # the kill came before the acks: they come again, and are written as nothing
            await dashboard_process.line("event=recorded")
        assert await rows_in(db) == (expected, SAMPLES)
        values = await db.fetch("SELECT value FROM stats ORDER BY value")
        assert [r["value"] for r in values] == list(range(SAMPLES))
    finally:
        await db.close()
