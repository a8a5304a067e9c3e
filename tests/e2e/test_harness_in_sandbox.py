"""The real thing: the spawner starts `python -m hive_harness` under bubblewrap with the agent's own credential; the
broker's wake-up message starts a turn of the real claude CLI (against the scripted API), whose `send` reaches the
manager; the harness beats, answers on its harness plane, serves a terminal inside the sandbox, and stops cleanly."""

import json
from contextlib import AsyncExitStack
from pathlib import Path

from nats.aio.client import Client

from hive_approver.__main__ import start as start_approver
from hive_broker.__main__ import start as start_broker
from hive_spawner.__main__ import start as start_spawner
from hive_spawner.settings import SpawnerSettings
from hivectl.natsserver import NatsServer
from hivetest.agents import Agents, make_agent, operator_call
from hivetest.bypasses import FAMILIES
from hivetest.claude import CLAUDE, SCRIPTED_ENV
from hivetest.harness import plant_everything
from hivetest.hive import TestHive
from hivetest.messages_api import MessagesApi, Text, ToolUse, serve_messages_api
from hivetest.services import approver_settings, broker_settings
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.models import (
    AgentRequest,
    AgentStatus,
    Approval,
    DecisionRequest,
    Empty,
    HarnessState,
    PtyOpen,
    PtySession,
    TurnStats,
)


def real_harness_spawner(hive: TestHive, state: Path, api: MessagesApi, **agent_env: str) -> SpawnerSettings:
    """A spawner that runs the real harness in bubblewrap, its CLI pointed at the scripted API."""
    assert isinstance(hive.server, NatsServer)
    base = hive.settings(subjects.SPAWNER)
    env = {
        "HIVE_CLAUDE": json.dumps([str(CLAUDE)]),
        "HIVE_CLAUDE_ENV": json.dumps({**SCRIPTED_ENV, "ANTHROPIC_BASE_URL": api.url}),
        **agent_env,
    }
    return SpawnerSettings(
        nats_url=base.nats_url,
        nats_creds=base.nats_creds,
        state_dir=state,
        nats_auth_dir=hive.server.root,
        agent_env=env,
    )


async def test_a_spawned_agent_runs_its_harness_and_answers(
    hive: TestHive, database_url: str, operator_nc: Client, spawner_state: Path
) -> None:
    assert isinstance(hive.server, NatsServer)
    async with AsyncExitStack() as stack:
        api = stack.enter_context(serve_messages_api())
        settings = real_harness_spawner(hive, spawner_state, api, HIVE_HEARTBEAT_SECONDS="0.5")
        await start_spawner(stack, settings)
        broker = await start_broker(stack, broker_settings(hive))
        approver = await start_approver(stack, approver_settings(hive, database_url))
        manager = await make_agent(hive, approver, "manager")
        manager_inbox = await Agents(hive, broker).agent("manager")
        dashboard = await hive.connect("dashboard")
        beats = await dashboard.subscribe(subjects.agent("bob", subjects.HEARTBEAT))
        turns = await dashboard.subscribe(subjects.agent("bob", subjects.STATS))

        # bob's first turn answers its wake-up message by writing to the manager.
        api.script([ToolUse("mcp__hyperhive__send", {"to": "manager", "body": "bob is up"})], [Text("Done.")])
        pending = await manager.request("spawn", agent="bob", description="a helper")
        await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)

        heard: list[tuple[str, str]] = []
        while ("bob", "bob is up") not in heard:
            got = (await manager_inbox.recv(wait=60)).messages
            assert got, f"the manager heard only {heard}"
            heard += [(m.sender, m.body) for m in got]
            await manager_inbox.ack([m.token for m in got])
        assert "You were started" in json.dumps(api.requests[0]["messages"])

        stats = TurnStats.model_validate_json((await turns.next_msg(timeout=30)).data)
        assert (stats.agent, stats.exit_class, stats.tool_calls) == ("bob", "ok", {"mcp__hyperhive__send": 1})
        beat = HarnessState.model_validate_json((await beats.next_msg(timeout=10)).data)
        assert beat.agent == "bob"
        state = await bus.call(dashboard, subjects.harness("bob", "state"), Empty(), HarnessState)
        assert state.turns >= 1

        # The terminal is a shell inside bob's sandbox: root there, its hostname bob, its home /state.
        opened = await bus.call(dashboard, subjects.harness("bob", "pty.open"), PtyOpen(), PtySession)
        out = await dashboard.subscribe(subjects.agent("bob", f"pty.{opened.session}.out"))
        await dashboard.publish(subjects.harness("bob", f"pty.{opened.session}.in"), b"echo at-$(id -u)-$(hostname)\n")
        seen = ""
        while "at-0-bob" not in seen:
            seen += (await out.next_msg(timeout=10)).data.decode(errors="replace")

        stopped = await bus.call(
            operator_nc, subjects.operator(subjects.SPAWNER, "stop"), AgentRequest(agent="bob"), AgentStatus, timeout=30
        )
        assert stopped.state == "stopped"


async def test_in_the_sandbox_no_bash_bypass_runs(
    hive: TestHive, database_url: str, operator_nc: Client, spawner_state: Path
) -> None:
    """The Bash check where it really runs: the spawned harness under bubblewrap, its hook posting to it from the
    sandbox, its policy the spawner's read-only bind (the template allows no Bash at all), things planted in /state."""
    assert isinstance(hive.server, NatsServer)
    lines = [ls[i].format(m="/state/marker", s="/state") for ls in FAMILIES.values() for i in range(0, len(ls), 5)]
    async with AsyncExitStack() as stack:
        api = stack.enter_context(serve_messages_api())
        settings = real_harness_spawner(hive, spawner_state, api)
        the_spawner = await start_spawner(stack, settings)
        await start_broker(stack, broker_settings(hive))
        approver = await start_approver(stack, approver_settings(hive, database_url))
        manager = await make_agent(hive, approver, "manager")
        dashboard = await hive.connect("dashboard")
        turns = await dashboard.subscribe(subjects.agent("bob", subjects.STATS))
        state = spawner_state / "agents" / "bob"
        state.mkdir(parents=True)
        plant_everything(state)  # what an agent could have left in its state dir before this start
        api.script(*([ToolUse("Bash", {"command": line})] for line in [*lines, "ls"]), [Text("Done.")])
        pending = await manager.request("spawn", agent="bob", description="a helper")
        await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
        stats = TurnStats.model_validate_json((await turns.next_msg(timeout=120)).data)
        the_spawner.backend.stop("bob")
    answers = [json.dumps(r["messages"][-1]) for r in api.requests[1:]]
    assert stats.bash_denied == len(lines) + 1  # every call was judged by the harness, "ls" too (nothing allowed)
    refused = [a for a in answers[: len(lines) + 1] if "PreToolUse:Bash hook error" in a]  # the harness said no
    assert len(refused) == len(lines) + 1, [a for a in answers if a not in refused]
    assert not (state / "marker").exists()
    assert not list(state.glob("planted-ran-*"))
