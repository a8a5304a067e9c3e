"""A config change, end to end through real services: the manager commits a change to an agent's agent.nix, asks for
it, the operator approves, the spawner applies exactly the frozen commit, and the broker enforces the new policy."""

from contextlib import AsyncExitStack

import pytest
from nats.aio.client import Client

from hive_approver.__main__ import start as start_approver
from hive_broker.__main__ import start as start_broker
from hive_spawner.__main__ import start as start_spawner
from hive_spawner.repos import git
from hive_spawner.service import Spawner
from hive_spawner.settings import SpawnerSettings
from hivetest.agents import Agents, make_agent, operator_call
from hivetest.hive import TestHive
from hivetest.services import approver_settings, broker_settings
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AgentPolicy, Approval, ApprovalsReply, ApprovalsRequest, DecisionRequest


async def test_an_approved_config_change_reaches_the_broker(
    hive: TestHive, database_url: str, operator_nc: Client
) -> None:
    async with AsyncExitStack() as stack:
        spawner = await spawner_in(stack, hive)
        broker = await start_broker(stack, broker_settings(hive))
        approver = await start_approver(stack, approver_settings(hive, database_url))
        agents = Agents(hive, broker)

        # alice exists, as after a spawn: her repos from the template, her applied policy in the bucket.
        spawner.repos.create("alice")
        await agents.set_policy("alice", ["manager"])
        manager = await make_agent(hive, approver, "manager")
        alice = await agents.agent("alice")
        bob = await agents.agent("bob", [])
        with pytest.raises(HiveError) as err:
            await alice.send("bob", "hi bob")
        assert err.value.code == ErrorCode.NOT_ALLOWED

        # The manager edits alice's proposed repo (its /agents mount) and asks for the commit.
        proposed = spawner.repos.proposed("alice")
        (proposed / "agent.nix").write_text('{...}: { hyperhive.allowedRecipients = [ "manager" "bob" ]; }\n')
        git(proposed, "commit", "-q", "-am", "alice may talk to bob")
        sha = git(proposed, "rev-parse", "HEAD")
        pending = await manager.request("apply_commit", agent="alice", commit_ref=sha[:10])
        assert (pending.frozen_sha, pending.tag) == (sha, f"proposal/{pending.id}")
        assert '+{...}: { hyperhive.allowedRecipients = [ "manager" "bob" ]; }' in (pending.diff or "")

        # The manager moves on before the operator decides; what is applied is still the frozen commit.
        (proposed / "agent.nix").write_text('{...}: { hyperhive.allowedRecipients = [ "operator" ]; }\n')
        git(proposed, "commit", "-q", "-am", "second thoughts")

        approved = await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
        assert approved.status == "applying"
        manager_inbox = await agents.agent("manager")
        told: list[str] = []
        while len(told) < 2:  # "approved", then "deployed" once the spawner reports
            got = (await manager_inbox.recv(wait=20)).messages
            assert got, f"the manager was told only {told}"
            told += [m.body for m in got]
            await manager_inbox.ack([m.token for m in got])
        assert "was approved" in told[0]
        assert f"#{pending.id}" in told[1]
        assert "deployed" in told[1]
        [done] = (await operator_call(operator_nc, "approvals", ApprovalsRequest(), ApprovalsReply)).approvals
        assert done.status == "deployed"
        assert git(spawner.repos.applied("alice"), "rev-parse", "HEAD") == sha

        await broker.policy.caught_up(await _revision(hive, "alice"))
        await alice.send("bob", "hi bob")
        [m] = (await bob.recv(wait=10)).messages
        assert (m.sender, m.body) == ("alice", "hi bob")


async def test_a_commit_that_does_not_evaluate_fails_with_the_reason_and_changes_nothing(
    hive: TestHive, database_url: str, operator_nc: Client
) -> None:
    async with AsyncExitStack() as stack:
        spawner = await spawner_in(stack, hive)
        approver = await start_approver(stack, approver_settings(hive, database_url))
        spawner.repos.create("alice")
        kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
        before = AgentPolicy(agent="alice")
        await kv.put("alice", bus.encode(before))
        manager = await make_agent(hive, approver, "manager")
        await approver.agents.caught_up(await _revision(hive, "alice"))

        proposed = spawner.repos.proposed("alice")
        (proposed / "agent.nix").write_text("{...}: { hyperhive.model = ; }\n")
        git(proposed, "commit", "-q", "-am", "broken")
        pending = await manager.request("apply_commit", agent="alice", commit_ref=git(proposed, "rev-parse", "HEAD"))
        events = await (await hive.connect("dashboard")).subscribe(f"{subjects.EVENTS_PREFIX}.approval_applied.>")
        await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
        await events.next_msg(timeout=20)

        [failed] = (await operator_call(operator_nc, "approvals", ApprovalsRequest(), ApprovalsReply)).approvals
        assert failed.status == "failed"
        assert "does not evaluate" in (failed.note or "")
        assert git(spawner.repos.applied("alice"), "rev-parse", "--verify", "--quiet", "HEAD", check=False) == ""
        assert AgentPolicy.model_validate_json((await kv.get("alice")).value or b"") == before


async def spawner_in(stack: AsyncExitStack, hive: TestHive) -> Spawner:
    base = hive.settings(subjects.SPAWNER)
    settings = SpawnerSettings(nats_url=base.nats_url, nats_creds=base.nats_creds, state_dir=base.state_dir)
    return await start_spawner(stack, settings)


async def _revision(hive: TestHive, agent: str) -> int:
    kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
    return int((await kv.get(agent)).revision or 0)
