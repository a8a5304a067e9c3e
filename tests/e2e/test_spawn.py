"""Spawning an agent end to end: the manager asks, the operator approves, the spawner creates its repos, mints its
NATS credential, publishes its policy and starts it under bubblewrap; crashes and restarts are seen by the hive."""

import json
import os
import stat
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError

from hive_approver.__main__ import start as start_approver
from hive_broker.__main__ import start as start_broker
from hive_spawner.__main__ import start as start_spawner
from hivectl.natsserver import NatsServer
from hivetest.agents import Agents, make_agent, operator_call
from hivetest.hive import TestHive
from hivetest.services import approver_settings, broker_settings, spawner_settings
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    AgentConfigReply,
    AgentPolicy,
    AgentRequest,
    AgentsReply,
    AgentStatus,
    Approval,
    DecisionRequest,
    Empty,
    InboxReply,
    InboxRequest,
    LogsReply,
    LogsRequest,
    Message,
)


def spawner(op: Client, verb: str, payload: object, reply: type) -> object:
    return bus.call(op, subjects.operator(subjects.SPAWNER, verb), payload, reply, timeout=20)  # type: ignore[arg-type]


async def test_a_spawned_agent_runs_sandboxed_with_its_credential_and_policy_and_its_crash_is_seen(
    hive: TestHive, database_url: str, operator_nc: Client, spawner_state: Path
) -> None:
    assert isinstance(hive.server, NatsServer)
    async with AsyncExitStack() as stack:
        the_spawner = await start_spawner(stack, spawner_settings(hive, spawner_state))
        broker = await start_broker(stack, broker_settings(hive))
        approver = await start_approver(stack, approver_settings(hive, database_url))
        manager = await make_agent(hive, approver, "manager")
        manager_inbox = await Agents(hive, broker).agent("manager")
        dashboard = await hive.connect("dashboard")
        applied = await dashboard.subscribe(f"{subjects.EVENTS_PREFIX}.approval_applied.>")
        to_bob = await dashboard.subscribe(subjects.inbox("bob"))  # what is stored in bob's inbox, live

        pending = await manager.request("spawn", agent="bob", description="a helper")
        await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
        await applied.next_msg(timeout=30)
        the_spawner.backend.sandbox("bob").wait_for("ready", 30)

        [bob] = (await spawner(operator_nc, "agents", Empty(), AgentsReply)).agents  # type: ignore[attr-defined]
        assert (bob.name, bob.state) == ("bob", "running")
        assert bob.applied
        state = spawner_state / "agents" / "bob"
        assert (state / "whoami").read_text().strip() == "0"
        seed = state / "nats.nk"
        assert stat.S_IMODE(seed.stat().st_mode) == 0o600
        assert seed.stat().st_uid == (bob.uid if os.geteuid() == 0 else os.geteuid())
        assert (hive.server.root / "agents" / "bob.pub").exists()
        kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
        assert AgentPolicy.model_validate_json((await kv.get("bob")).value or b"").allowed_recipients == ["manager"]
        handed = AgentPolicy.model_validate_json(
            (spawner_state / "agents" / ".policy" / "bob" / "policy.json").read_text()
        )  # for the harness, bound read-only at /run/hive
        assert handed.allowed_recipients == ["manager"]
        logs = await spawner(operator_nc, "logs", LogsRequest(agent="bob"), LogsReply)
        assert "ready" in logs.lines  # type: ignore[attr-defined]

        # The broker turned agent_started into bob's wake-up message.
        woken = Message.model_validate_json((await to_bob.next_msg(timeout=30)).data)
        assert (woken.sender, "You were started" in woken.body) == ("system", True)
        view = await bus.call(
            operator_nc, subjects.operator(subjects.BROKER, "inbox"), InboxRequest(owner="bob"), InboxReply
        )
        assert "You were started" in view.entries[0].message.body

        # A crash is an event, and the manager is told.
        os.kill(the_spawner.backend.sandbox("bob").pid, 9)
        told: list[str] = []
        while not any("bob stopped unexpectedly" in t for t in told):
            got = (await manager_inbox.recv(wait=20)).messages
            assert got, f"the manager was told only {told}"
            told += [m.body for m in got]
            await manager_inbox.ack([m.token for m in got])
        status = await spawner(operator_nc, "restart", AgentRequest(agent="bob"), AgentStatus)
        assert status.state == "running"  # type: ignore[attr-defined]
        stopped = await spawner(operator_nc, "stop", AgentRequest(agent="bob"), AgentStatus)
        assert stopped.state == "stopped"  # type: ignore[attr-defined]
        assert json.loads((spawner_state / "agents" / ".uids.json").read_text())["bob"] == bob.uid


async def test_destroy_keeps_a_tombstone_that_revives_or_purges_and_only_the_manager_has_lifecycle_verbs(
    hive: TestHive, database_url: str, operator_nc: Client, spawner_state: Path
) -> None:
    assert isinstance(hive.server, NatsServer)
    async with AsyncExitStack() as stack:
        the_spawner = await start_spawner(stack, spawner_settings(hive, spawner_state))
        approver = await start_approver(stack, approver_settings(hive, database_url))
        manager = await make_agent(hive, approver, "manager")
        dashboard = await hive.connect("dashboard")
        applied = await dashboard.subscribe(f"{subjects.EVENTS_PREFIX}.approval_applied.>")
        lifecycle_events = await dashboard.subscribe(f"{subjects.EVENTS_PREFIX}.*.bob")
        pending = await manager.request("spawn", agent="bob")
        await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
        await applied.next_msg(timeout=30)
        alice = await make_agent(hive, approver, "alice")

        # The manager may stop and start others, never itself; another agent may not at all.
        lifecycle = AgentRequest(agent="bob")
        stopped = await manager.call("lifecycle.stop", lifecycle, AgentStatus, 30)
        assert stopped.state == "stopped"
        started = await manager.call("lifecycle.start", lifecycle, AgentStatus, 30)
        assert started.state == "running"
        the_spawner.backend.sandbox("bob").wait_for("ready", 30)  # it has written its state (whoami)
        for caller, verb, target, code in [
            (alice, "stop", "bob", ErrorCode.NOT_MANAGER),
            (manager, "restart", "manager", ErrorCode.NOT_ALLOWED),
            (manager, "purge", "bob", ErrorCode.INVALID_REQUEST),
        ]:
            with pytest.raises(HiveError) as err:
                await caller.call(f"lifecycle.{verb}", AgentRequest(agent=target), AgentStatus, 30)
            assert err.value.code == code

        config = await spawner(operator_nc, "agent-config", lifecycle, AgentConfigReply)
        assert "hyperhive" in config.agent_nix  # type: ignore[attr-defined]

        destroyed = await spawner(operator_nc, "destroy", lifecycle, AgentStatus)
        assert destroyed.state == "destroyed"  # type: ignore[attr-defined]
        assert not (hive.server.root / "agents" / "bob.pub").exists()
        kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
        with pytest.raises(KeyNotFoundError):
            await kv.get("bob")
        state = spawner_state / "agents" / "bob"
        assert (state / "whoami").exists()  # the tombstone keeps its state
        with pytest.raises(HiveError) as err:
            await spawner(operator_nc, "start", lifecycle, AgentStatus)
        assert err.value.code == ErrorCode.CONFLICT

        revived = await spawner(operator_nc, "revive", lifecycle, AgentStatus)
        assert revived.state == "running"  # type: ignore[attr-defined]
        assert (hive.server.root / "agents" / "bob.pub").exists()
        await spawner(operator_nc, "destroy", lifecycle, AgentStatus)
        await spawner(operator_nc, "purge", lifecycle, AgentStatus)
        assert not state.exists()
        assert (await spawner(operator_nc, "agents", Empty(), AgentsReply)).agents == []  # type: ignore[attr-defined]
        assert the_spawner.repos.exists("bob") is False

        seen: list[str] = []
        await dashboard.flush()  # a round trip: every event published before it has reached us
        while lifecycle_events.pending_msgs:
            event = json.loads((await lifecycle_events.next_msg(timeout=1)).data)
            data = event["data"]
            seen.append(f"{event['type']}:{data.get('transient') or data.get('state') or ''}")
        spawner_says = [e for e in seen if e.startswith(("agent_transient", "agent_state"))]
        assert spawner_says[:2] == ["agent_transient:spawning", "agent_state:running"]
        assert "agent_transient:destroying" in spawner_says
        assert "agent_state:destroyed" in spawner_says
        assert spawner_says[-1] == "agent_state:destroyed"  # purge leaves no state behind
