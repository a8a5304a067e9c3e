"""PostgreSQL stopped while operator questions fall due: the approver keeps running (a stopped approver stopped the
whole hive under `hivectl up`), callers are told `unavailable` — not `internal` — while it is gone, and the deadlines
fire, in order, once it is back."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from hive_approver.__main__ import start as start_approver
from hivectl.postgres import Postgres
from hivetest.agents import make_agent
from hivetest.hive import TestHive
from hivetest.services import approver_settings
from hyperhive import bus
from hyperhive.process import free_port
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AskReply, AskRequest, QuestionsReply, QuestionsRequest


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[Postgres]:
    """A PostgreSQL of this test's own, to stop and start (the session's is shared)."""
    server = Postgres(tmp_path / "pg", port=free_port()).start(fsync=False)
    yield server
    server.stop()


async def test_the_approver_rides_out_a_database_outage(hive: TestHive, own_postgres: Postgres, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        stopped = asyncio.Event()
        approver = await start_approver(stack, approver_settings(hive, own_postgres.url()), stopped)
        alice = await make_agent(hive, approver, "alice")
        answered = await (await hive.connect("dashboard")).subscribe(f"{subjects.EVENTS_PREFIX}.question_answered.>")
        asked = [
            await alice.call("ask", AskRequest(question=f"question {n}", ttl_seconds=1 + n), AskReply) for n in range(2)
        ]
        own_postgres.stop()  # before either deadline falls due
        op = await hive.connect("operator")
        with pytest.raises(HiveError) as refused:
            await bus.call(op, subjects.operator(subjects.APPROVER, "questions"), QuestionsRequest(), QuestionsReply)
        assert refused.value.code == ErrorCode.UNAVAILABLE
        with pytest.raises(HiveError) as refused:
            await alice.call("ask", AskRequest(question="during the outage"), AskReply)
        assert refused.value.code == ErrorCode.UNAVAILABLE

        own_postgres.start()  # the same data dir and socket
        fired = [json.loads((await answered.next_msg(timeout=60)).data)["data"]["id"] for _ in asked]
        assert fired == [a.id for a in asked]  # both expired, in deadline order
        assert not stopped.is_set()  # and the approver never gave up
