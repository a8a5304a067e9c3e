"""Approver fixtures: a real approver on real PostgreSQL and NATS, a test spawner that answers like the real one,
and the manager and agents as their harnesses call the approver."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from typing import Any

import asyncpg
import pytest
from nats.aio.client import Client
from nats.js import api as js_api

from hive_approver.__main__ import start
from hive_approver.service import Approver
from hive_approver.settings import ApproverSettings
from hivetest.hive import TestHive
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    AgentPolicy,
    Approval,
    ApprovalRequest,
    Empty,
    FreezeReply,
    FreezeRequest,
    OutcomeRequest,
    SpawnerCommand,
)


def approver_settings(hive: TestHive, database_url: str) -> ApproverSettings:
    base = hive.settings(subjects.APPROVER)
    return ApproverSettings(
        nats_url=base.nats_url, nats_creds=base.nats_creds, state_dir=base.state_dir, database_url=database_url
    )


class TestSpawner:
    """Answers `freeze` like the real spawner (known refs only) and applies queued commands by reporting an outcome."""

    __test__ = False

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.refs: dict[str, str] = {}
        self.failing: set[str] = set()
        self.commands: list[SpawnerCommand] = []
        self.applied = asyncio.Event()

    def knows(self, ref: str) -> str:
        sha = hashlib.sha1(ref.encode()).hexdigest()  # noqa: S324 - a made-up commit id
        self.refs[ref] = sha
        return sha

    async def freeze(self, subject: str, req: FreezeRequest) -> FreezeReply:
        if req.commit_ref not in self.refs:
            raise HiveError(ErrorCode.NOT_FOUND, f"{req.commit_ref} is not a commit of {req.agent}'s proposed repo.")
        return FreezeReply(sha=self.refs[req.commit_ref], tag=f"proposal/{req.approval_id}", diff="+ model = x;\n")

    async def work(self) -> None:
        js = self.nc.jetstream()
        sub = await js.pull_subscribe(
            subjects.spawner_cmd(),
            durable="spawner-local",
            stream=subjects.SPAWNER_CMD_STREAM,
            config=js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.EXPLICIT),
        )
        while True:
            try:
                msgs = await sub.fetch(1, timeout=30)
            except TimeoutError:
                continue
            for msg in msgs:
                command = SpawnerCommand.model_validate_json(msg.data)
                self.commands.append(command)
                ok = command.agent not in self.failing
                outcome = OutcomeRequest(approval_id=command.approval_id, ok=ok, reason="" if ok else "eval failed")
                try:
                    await bus.call(self.nc, subjects.operator(subjects.APPROVER, "outcome"), outcome, Approval)
                except HiveError:
                    continue  # like the real spawner: not acked, so it comes again
                await msg.ack()
                self.applied.set()


@pytest.fixture
async def spawner(hive: TestHive) -> AsyncIterator[TestSpawner]:
    nc = await hive.connect(subjects.SPAWNER)
    test_spawner = TestSpawner(nc)
    endpoints = [
        bus.Endpoint("freeze", subjects.operator(subjects.SPAWNER, "freeze"), FreezeRequest, test_spawner.freeze)
    ]
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(
            bus.serve(nc, name="spawner", version="0.0.1", description="test", endpoints=endpoints)
        )
        bus.background(stack, test_spawner.work(), "test-spawner")
        yield test_spawner


@pytest.fixture
async def approver(hive: TestHive, database_url: str, spawner: TestSpawner) -> AsyncIterator[Approver]:
    async with AsyncExitStack() as stack:
        yield await start(stack, approver_settings(hive, database_url))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


class Caller:
    """An agent as its harness calls the approver."""

    def __init__(self, name: str, nc: Client) -> None:
        self.name = name
        self.nc = nc

    async def request(self, kind: str, **fields: Any) -> Approval:
        req = ApprovalRequest(**fields)
        return await bus.call(self.nc, subjects.agent(self.name, f"request.{kind}"), req, Approval, timeout=10)

    async def call(self, verb: str, payload: Any, reply: Any, timeout: float = 10) -> Any:
        return await bus.call(self.nc, subjects.agent(self.name, verb), payload, reply, timeout=timeout)


async def make_agent(hive: TestHive, approver: Approver | None, name: str) -> Caller:
    """Authorize `name` and give it an applied policy (so it exists), as the spawner would."""
    hive.add_agent(name)
    kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
    revision = await kv.put(name, bus.encode(AgentPolicy(agent=name)))
    if approver is not None:
        await approver.agents.caught_up(revision)
    return Caller(name, await hive.connect(name))


@pytest.fixture
async def manager(hive: TestHive, approver: Approver) -> Caller:
    return await make_agent(hive, approver, "manager")


@pytest.fixture
async def alice(hive: TestHive, approver: Approver) -> Caller:
    return await make_agent(hive, approver, "alice")


async def operator_call(nc: Client, verb: str, payload: Any, reply: Any) -> Any:
    return await bus.call(nc, subjects.operator(subjects.APPROVER, verb), payload, reply, timeout=10)


__all__ = ["Empty"]
