"""Nothing pending is lost when the approver dies, and an approval it had decided still reaches the spawner."""

import asyncio
import signal
from contextlib import AsyncExitStack

import asyncpg
from nats.aio.client import Client

from hive_approver.__main__ import start
from hivetest.agents import make_agent, operator_call
from hivetest.hive import TestHive
from hivetest.services import TestSpawner, approver_settings
from hyperhive.process import Child, start_service
from hyperhive.wire.models import Approval, ApprovalsReply, ApprovalsRequest, DecisionRequest


def start_approver(hive: TestHive, database_url: str) -> Child:
    return start_service("approver", {**hive.service_env("approver"), "HIVE_DATABASE_URL": database_url})


async def test_kill_9_loses_no_pending_approval(
    hive: TestHive, database_url: str, spawner: TestSpawner, operator_nc: Client
) -> None:
    manager = await make_agent(hive, None, "manager")
    approver = start_approver(hive, database_url)
    try:
        pending = await manager.request("spawn", agent="bob", description="a helper")
        approver.stop(signal.SIGKILL)
        approver = start_approver(hive, database_url)
        listed = await operator_call(operator_nc, "approvals", ApprovalsRequest(status="pending"), ApprovalsReply)
        assert [a.id for a in listed.approvals] == [pending.id]
        await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
        await asyncio.wait_for(spawner.applied.wait(), 10)
        assert [(c.approval_id, c.action, c.agent) for c in spawner.commands] == [(pending.id, "spawn", "bob")]
    finally:
        approver.stop()


async def test_a_decided_approval_whose_command_was_never_queued_is_queued_at_start(
    hive: TestHive, database_url: str, spawner: TestSpawner
) -> None:
    conn = await asyncpg.connect(database_url)
    try:  # as if the approver died between committing the decision and publishing the command
        approval_id = await conn.fetchval(
            """INSERT INTO approvals (agent, kind, requested_by, status, resolved_by, resolved_at)
               VALUES ('bob', 'spawn', 'manager', 'applying', 'operator', now()) RETURNING id"""
        )
    finally:
        await conn.close()
    async with AsyncExitStack() as stack:
        await start(stack, approver_settings(hive, database_url))
        await asyncio.wait_for(spawner.applied.wait(), 10)
    assert [c.approval_id for c in spawner.commands] == [approval_id]
