"""Approvals end to end against real PostgreSQL and nats-server, with a test spawner that answers like the real one."""

import asyncio
import json

import asyncpg
import pytest
from nats.aio.client import Client

from hive_approver.service import Approver
from hivetest.agents import Caller, operator_call
from hivetest.hive import TestHive
from hivetest.services import TestSpawner
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import Approval, ApprovalsReply, ApprovalsRequest, DecisionRequest, WaitRequest


async def events(hive: TestHive, kind: str) -> list[dict[str, object]]:
    js = (await hive.connect(subjects.SPAWNER)).jetstream()
    info = await js.stream_info(subjects.EVENTS_STREAM, subjects_filter=f"{subjects.EVENTS_PREFIX}.{kind}.>")
    out = []
    for seq_subject_count in [sum((info.state.subjects or {}).values())]:
        if seq_subject_count:
            sub = await js.subscribe(f"{subjects.EVENTS_PREFIX}.{kind}.>", ordered_consumer=True)
            out = [json.loads((await sub.next_msg(timeout=5)).data) for _ in range(seq_subject_count)]
            await sub.unsubscribe()
    return out


async def test_apply_commit_flows_from_request_to_deployed(
    hive: TestHive, manager: Caller, alice: Caller, spawner: TestSpawner, operator_nc: Client, db: asyncpg.Connection
) -> None:
    sha = spawner.knows("abc1234")
    pending = await manager.request("apply_commit", agent="alice", commit_ref="abc1234", description="bump model")
    assert (pending.status, pending.frozen_sha, pending.tag) == ("pending", sha, f"proposal/{pending.id}")
    assert pending.diff
    [added] = await events(hive, "approval_added")
    assert added["data"]["id"] == pending.id

    approved = await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id, note="ok"), Approval)
    assert (approved.status, approved.resolved_by) == ("applying", "operator")
    await asyncio.wait_for(spawner.applied.wait(), 10)
    [command] = spawner.commands
    assert (command.approval_id, command.action, command.agent, command.sha) == (
        pending.id,
        "apply_commit",
        "alice",
        sha,
    )

    listed = await operator_call(operator_nc, "approvals", ApprovalsRequest(), ApprovalsReply)
    assert [(a.id, a.status) for a in listed.approvals] == [(pending.id, "deployed")]
    assert [e["data"]["status"] for e in await events(hive, "approval_applied")] == ["deployed"]
    actions = [(r["actor"], r["action"], r["outcome"]) for r in await db.fetch("SELECT * FROM audit ORDER BY id")]
    assert actions == [
        ("manager", "request.apply_commit", "pending"),
        ("operator", "approve", "applying"),
        ("spawner", "apply", "deployed"),
    ]


async def test_a_failed_apply_says_why(
    manager: Caller, alice: Caller, spawner: TestSpawner, operator_nc: Client
) -> None:
    spawner.knows("abc1234")
    spawner.failing.add("alice")
    pending = await manager.request("apply_commit", agent="alice", commit_ref="abc1234")
    await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
    await asyncio.wait_for(spawner.applied.wait(), 10)
    [a] = (await operator_call(operator_nc, "approvals", ApprovalsRequest(), ApprovalsReply)).approvals
    assert (a.status, a.note) == ("failed", "eval failed")


async def test_fifty_concurrent_decisions_end_in_exactly_one(
    hive: TestHive, manager: Caller, alice: Caller, spawner: TestSpawner, operator_nc: Client
) -> None:
    spawner.knows("abc1234")
    pending = await manager.request("apply_commit", agent="alice", commit_ref="abc1234")
    verbs = ["approve", "deny"] * 25
    results = await asyncio.gather(
        *(operator_call(operator_nc, v, DecisionRequest(id=pending.id), Approval) for v in verbs),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, Approval)]
    losses = [r for r in results if isinstance(r, HiveError)]
    # One decision is taken; the operator's other calls of the same verb are retries of it and get its outcome,
    # the opposite verb is told who decided what.
    decided = {w.status for w in wins}  # a retry answers with the decision's outcome as it is now
    won = "deny" if "denied" in decided else "approve"
    assert decided <= ({"denied"} if won == "deny" else {"applying", "deployed"})
    assert [type(r) for v, r in zip(verbs, results, strict=True) if v == won] == [Approval] * 25
    assert len(losses) == 25
    assert all(e.code == ErrorCode.CONFLICT and "by operator" in e.message for e in losses)
    assert len(await events(hive, "approval_resolved")) == 1
    info = await (await hive.connect(subjects.SPAWNER)).jetstream().stream_info(subjects.SPAWNER_CMD_STREAM)
    # One command at most, queued or taken (a taken one stays queued until the spawner acks it).
    assert info.state.messages <= 1
    assert len(spawner.commands) <= 1
    assert bool(info.state.messages or spawner.commands) == (won == "approve")


async def test_only_the_manager_may_request_and_refusals_are_audited(
    alice: Caller, manager: Caller, db: asyncpg.Connection
) -> None:
    with pytest.raises(HiveError) as err:
        await alice.request("spawn", agent="bob")
    assert err.value.code == ErrorCode.NOT_MANAGER
    row = await db.fetchrow("SELECT * FROM audit")
    assert (row["actor"], row["action"], row["outcome"]) == ("alice", "request.spawn", "refused")


async def test_one_pending_request_per_agent_and_kind(manager: Caller, alice: Caller, spawner: TestSpawner) -> None:
    spawner.knows("abc1234")
    first = await manager.request("apply_commit", agent="alice", commit_ref="abc1234")
    with pytest.raises(HiveError) as err:
        await manager.request("apply_commit", agent="alice", commit_ref="abc1234")
    assert err.value.code == ErrorCode.CONFLICT
    assert f"#{first.id}" in err.value.message


async def test_a_ref_the_spawner_cannot_freeze_fails_the_request(manager: Caller, alice: Caller) -> None:
    with pytest.raises(HiveError) as err:
        await manager.request("apply_commit", agent="alice", commit_ref="dead1234")
    assert err.value.code == ErrorCode.NOT_FOUND
    assert "Cannot freeze dead1234" in err.value.message


@pytest.mark.parametrize(
    ("kind", "fields", "code"),
    [
        ("apply_commit", {"agent": "alice", "commit_ref": "xyz1234"}, ErrorCode.INVALID_REQUEST),
        ("apply_commit", {"agent": "alice", "commit_ref": "ABC1234"}, ErrorCode.INVALID_REQUEST),
        ("apply_commit", {"agent": "alice", "commit_ref": "abc123"}, ErrorCode.INVALID_REQUEST),
        ("apply_commit", {"agent": "alice", "commit_ref": "a" * 41}, ErrorCode.INVALID_REQUEST),
        ("apply_commit", {"agent": "alice"}, ErrorCode.INVALID_REQUEST),
        ("apply_commit", {"agent": "ghost", "commit_ref": "abc1234"}, ErrorCode.NOT_FOUND),
        ("apply_commit", {"agent": "../etc", "commit_ref": "abc1234"}, ErrorCode.INVALID_NAME),
        ("spawn", {"agent": "alice"}, ErrorCode.CONFLICT),
        ("spawn", {"agent": "operator"}, ErrorCode.INVALID_NAME),
        ("spawn", {"agent": "ALICE"}, ErrorCode.INVALID_NAME),
        ("spawn", {"agent": "x" * 20}, ErrorCode.INVALID_NAME),
        ("spawn", {"agent": "bob", "description": "x" * 4001}, ErrorCode.INVALID_REQUEST),
        ("launch", {"agent": "bob"}, ErrorCode.INVALID_REQUEST),
    ],
)
async def test_bad_requests_get_their_error_code(
    manager: Caller, alice: Caller, kind: str, fields: dict[str, object], code: ErrorCode
) -> None:
    reply = await manager.nc.request(subjects.agent("manager", f"request.{kind}"), json.dumps(fields).encode(), 10)
    assert (reply.headers or {}).get("Nats-Service-Error-Code") == code, reply.headers


async def test_unknown_ids_are_not_found(approver: Approver, operator_nc: Client) -> None:
    for verb in ("approve", "deny"):
        with pytest.raises(HiveError) as err:
            await operator_call(operator_nc, verb, DecisionRequest(id=999), Approval)
        assert err.value.code == ErrorCode.NOT_FOUND


async def test_tool_permission_waits_for_the_operator(alice: Caller, operator_nc: Client) -> None:
    asked = await alice.request("tool_permission", agent="alice", tool="Bash", input={"command": "rm -rf build"})
    assert (asked.status, asked.default_action) == ("pending", "deny")
    waiting = asyncio.create_task(alice.call("decision", WaitRequest(id=asked.id, wait_seconds=60), Approval, 70))
    await operator_call(operator_nc, "approve", DecisionRequest(id=asked.id), Approval)
    decided = await asyncio.wait_for(waiting, 10)
    assert decided.status == "approved"


async def test_tool_permission_expires_to_deny_on_time(alice: Caller) -> None:
    asked = await alice.request("tool_permission", agent="alice", tool="Bash", ttl_seconds=1)
    decided = await alice.call("decision", WaitRequest(id=asked.id, wait_seconds=30), Approval, 40)
    assert (decided.status, decided.resolved_by) == ("expired", "deadline")


async def test_an_agent_cannot_wait_on_someone_elses_approval(hive: TestHive, alice: Caller, manager: Caller) -> None:
    asked = await alice.request("tool_permission", agent="alice", tool="Bash")
    with pytest.raises(HiveError) as err:
        await manager.call("decision", WaitRequest(id=asked.id), Approval)
    assert err.value.code == ErrorCode.NOT_FOUND
