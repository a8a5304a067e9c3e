"""The stats against real NATS and PostgreSQL: what the harness and the approver publish is recorded by the
dashboard's recorder and read back through `/api/stats`, bucketed on the server; what an agent publishes that is not
a sample is logged and skipped, and the recorder goes on; bad parameters are refused with a sentence."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx2 as httpx
import pytest
from nats.aio.client import Client

from hive_broker.service import Broker
from hive_dashboard.recorder import insert
from hivetest.agents import Agents, Caller, make_agent
from hivetest.hive import TestHive
from hyperhive import bus, runtime
from hyperhive.wire import subjects
from hyperhive.wire.models import ApprovalQueue, InboxDepths, TurnStats

from .sse import read
from .test_api import refused

NOW = datetime.now(UTC)


def turn(**fields: object) -> TurnStats:
    base: dict[str, object] = {
        "agent": "alice",
        "model": "m",
        "started_at": NOW,
        "duration_ms": 1000,
        "exit_class": "ok",
    }
    return TurnStats.model_validate(base | fields)


@asynccontextmanager
async def recordings(operator: httpx.AsyncClient) -> AsyncIterator[httpx.Response]:
    """The live feed, subscribed: each `stats` event on it says a batch was committed."""
    as_of = (await operator.get("/api/snapshot")).json()["as_of"]
    async with operator.stream("GET", f"/events?after={as_of}") as response:
        await read(response, 1, "hello")
        yield response


async def recorded(response: httpx.Response) -> list[str]:
    events = await read(response, 1, "stats")
    return list(events[-1].json()["agents"])


async def publish(nc: Client, agent: str, data: bytes) -> None:
    await nc.publish(subjects.agent(agent, subjects.STATS), data)
    await nc.flush()


@pytest.fixture
async def alice_nc(hive: TestHive) -> Client:
    return (await make_agent(hive, None, "alice")).nc


async def test_a_turns_figures_are_recorded_and_read_back(operator: httpx.AsyncClient, alice_nc: Client) -> None:
    async with recordings(operator) as feed:
        first = turn(
            tool_calls={"Bash": 2, "mcp__hyperhive__send": 1},
            sent={"peer": 1},
            received={"operator": 1, "manager": 2},
            cost_usd=0.5,
            input_tokens=100,
            output_tokens=20,
            inbox_depth=3,
            notes_bytes=42,
            duration_ms=1200,
        )
        await publish(alice_nc, "alice", bus.encode(first))
        assert await recorded(feed) == ["*", "alice"]
        await publish(alice_nc, "alice", bus.encode(turn(exit_class="cancelled", duration_ms=3000, cost_usd=0.25)))
        await recorded(feed)

    async def series(key: str, **params: str) -> list[dict[str, float]]:
        reply = await operator.get("/api/stats", params={"key": key, **params})
        assert reply.status_code == 200, reply.text
        assert reply.json()["step_seconds"] == 300  # a day in at most 500 buckets
        return list(reply.json()["points"])

    turns = await series("turns", agent="alice")
    assert sum(p["n"] for p in turns) == 2
    durations = await series("turn.duration_ms", agent="alice")
    assert (sum(p["n"] for p in durations), max(p["max"] for p in durations)) == (2, 3000)
    assert max(p["max"] for p in await series("inbox.depth", agent="alice")) == 3
    assert sum(p["sum"] for p in await series("tool.mcp__hyperhive__send", agent="alice")) == 1
    assert sum(p["sum"] for p in await series("turn.cost_usd")) == 0.75  # hive-wide
    assert all(p["last"] >= 0 for p in await series("since_last_turn", agent="alice"))

    async def totals(family: str) -> dict[str, float]:
        reply = await operator.get("/api/stats/totals", params={"family": family, "agent": "alice"})
        return dict(reply.json()["totals"])

    assert await totals("turn.exit") == {"ok": 1, "cancelled": 1}
    assert await totals("tool") == {"Bash": 2, "mcp__hyperhive__send": 1}
    assert await totals("turn.received") == {"operator": 1, "manager": 2}
    assert await totals("turn.sent") == {"peer": 1}
    top = (await operator.get("/api/stats/top")).json()
    assert top["agents"] == [{"agent": "alice", "total": 0.75}]


async def test_what_is_not_a_sample_is_logged_and_the_recorder_goes_on(
    operator: httpx.AsyncClient, alice_nc: Client, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "hive_dashboard.recorder")
    bad = [
        b"not json",
        b'{"kind": "hive.turn.stats.v1"}',
        bus.encode(turn(tool_calls={"../../etc/passwd": 1})),
        bus.encode(turn(tool_calls={f"t{i}": 1 for i in range(300)})),
        bus.encode(turn()).replace(b'"cost_usd":0.0', b'"cost_usd":1e400'),  # infinity
        bus.encode(turn()).replace(b'"duration_ms":1000', b'"duration_ms":1' + b"0" * 30),
        bus.encode(turn(received={"operator": 1})).replace(b'"operator"', b'"everyone"'),
        bus.encode(ApprovalQueue(pending=99)),  # the approver's, not an agent's to say
        bus.encode(InboxDepths(depths={"bob": 5})),  # the broker's
    ]
    async with recordings(operator) as feed:
        for data in bad:
            await publish(alice_nc, "alice", data)
        await publish(alice_nc, "alice", bus.encode(turn(duration_ms=7)))
        await recorded(feed)
    conn = await asyncpg.connect(database_url)
    try:
        samples = await conn.fetchval("SELECT count(*) FROM stats_samples")
        durations = await conn.fetch("SELECT value FROM stats WHERE key = 'turn.duration_ms'")
    finally:
        await conn.close()
    assert samples == 1  # the good one only
    assert [r["value"] for r in durations] == [7]
    assert sum("outcome=bad_sample" in r.message for r in caplog.records) == len(bad)


async def test_the_approvers_queue_is_a_hive_wide_series(operator: httpx.AsyncClient, alice: Caller) -> None:
    async with recordings(operator) as feed:
        await alice.request("tool_permission", agent="alice", tool="Bash", input={"command": "make"})
        while "*" not in await recorded(feed):
            pass
    points = (await operator.get("/api/stats", params={"key": "approvals.pending"})).json()["points"]
    assert points[-1]["last"] == 1


async def test_a_paused_agents_growing_inbox_is_charted_from_the_brokers_samples(
    operator: httpx.AsyncClient, agents: Agents, broker: Broker
) -> None:
    """bob takes no turn (paused, or busy), so his harness says nothing of his depth; the broker's samples do."""
    bob = await agents.agent("bob", recipients=[])
    await bob.recv()  # his inbox exists, and is empty
    alice = await agents.agent("alice", recipients=["bob"])
    async with recordings(operator) as feed:
        for i in range(3):
            await alice.send("bob", f"m{i}")
        sampler = asyncio.create_task(broker.sample_depths(0.05))  # the fixture's broker samples every 15 s
        try:
            while "bob" not in await recorded(feed):
                pass
        finally:
            await runtime.cancelled(sampler)
    points = (await operator.get("/api/stats", params={"agent": "bob", "key": "inbox.depth"})).json()["points"]
    assert points[-1]["last"] == 3


async def test_a_long_window_is_bucketed_on_the_server(operator: httpx.AsyncClient, database_url: str) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [("alice", "turn.duration_ms", start + timedelta(minutes=i), i, float(i % 100)) for i in range(7 * 1440)]
    conn = await asyncpg.connect(database_url)
    try:
        assert await insert(conn, rows) == len(rows)
        assert await insert(conn, rows) == 0  # written again (a batch delivered again): nothing new
    finally:
        await conn.close()
    params = {"key": "turn.duration_ms", "agent": "alice", "since": start.isoformat(), "until": "2026-01-08T00:00Z"}
    reply = (await operator.get("/api/stats", params=params)).json()
    assert reply["step_seconds"] == 1800
    assert len(reply["points"]) == 7 * 48
    assert sum(p["n"] for p in reply["points"]) == len(rows)
    first = reply["points"][0]
    assert (first["n"], first["min"], first["max"], first["p50"]) == (30, 0, 29, 14.5)
    assert first["p95"] == pytest.approx(27.55)


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"key": "nope", "agent": "alice"}, 400, "invalid_request"),
        ({"key": "approvals.pending", "agent": "alice"}, 400, "invalid_request"),  # hive-wide only
        ({"key": "inbox.depth"}, 400, "invalid_request"),  # an agent's only
        ({"key": "tool.a/b", "agent": "alice"}, 400, "invalid_request"),
        ({"key": "turns\x00", "agent": "alice"}, 400, "invalid_request"),
        ({"key": "turns", "agent": "BAD"}, 400, "invalid_name"),
        ({"key": "turns", "agent": "al\x00ice"}, 400, "invalid_name"),
        ({"key": "turns", "since": "2026-01-02T00:00Z", "until": "2026-01-01T00:00Z"}, 400, "invalid_request"),
        ({"key": "turns", "since": "2020-01-01T00:00Z", "until": "2026-01-01T00:00Z"}, 400, "invalid_request"),
        ({"key": "turns", "since": "1" + "0" * 40}, 400, "invalid_request"),
        ({"key": "turns", "until": "99999999999999999999"}, 400, "invalid_request"),
        ({"key": "turns", "since": "\x00"}, 400, "invalid_request"),
        ({"key": "x" * 1000}, 400, "invalid_request"),
        ({}, 400, "invalid_request"),
    ],
)
async def test_bad_stats_parameters_are_refused_with_a_sentence(
    operator: httpx.AsyncClient, params: dict[str, str], status: int, code: str
) -> None:
    refused(await operator.get("/api/stats", params=params), status, code)


async def test_bad_totals_and_top_parameters_are_refused(operator: httpx.AsyncClient) -> None:
    refused(
        await operator.get("/api/stats/totals", params={"family": "nope", "agent": "alice"}), 400, "invalid_request"
    )
    refused(await operator.get("/api/stats/totals", params={"family": "tool"}), 400, "invalid_request")  # hive-wide
    refused(await operator.get("/api/stats/top", params={"key": "notes.bytes"}), 400, "invalid_request")
    refused(await operator.get("/api/stats/top", params={"limit": "0"}), 400, "invalid_request")


async def test_the_stats_need_a_session_and_are_in_the_schema(operator: httpx.AsyncClient, dashboard: object) -> None:
    async with httpx.AsyncClient(base_url=str(operator.base_url)) as anonymous:
        for path in ("/api/stats?key=turns", "/api/stats/totals?family=turn.exit", "/api/stats/top"):
            refused(await anonymous.get(path), 401, "unauthenticated")
    schema = (await operator.get("/api/openapi.json")).json()
    assert {"/stats", "/stats/totals", "/stats/top"} <= set(schema["paths"])
    assert {"StatsSeries", "StatsPoint", "StatsTotals", "TopAgents"} <= set(schema["components"]["schemas"])
