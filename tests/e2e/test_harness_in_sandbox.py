"""The real thing: the spawner starts `python -m hive_harness` under bubblewrap with the agent's own credential; the
broker's wake-up message starts a turn of the real claude CLI (against the scripted API), whose `send` reaches the
manager; the harness beats, answers on its harness plane, serves a terminal inside the sandbox, and stops cleanly."""

import asyncio
import json
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client

from hive_approver.__main__ import start as start_approver
from hive_broker.__main__ import start as start_broker
from hive_spawner.__main__ import start as start_spawner
from hive_spawner.service import Spawner
from hivectl.natsserver import NatsServer
from hivetest.agents import Agents, make_agent, operator_call
from hivetest.bypasses import FAMILIES
from hivetest.harness import States, harness_call, plant_everything
from hivetest.hive import TestHive
from hivetest.messages_api import Hold, MessagesApi, Text, ToolUse, serve_messages_api
from hivetest.services import approver_settings, broker_settings, real_harness_spawner
from hyperhive import bus, runtime
from hyperhive.wire import subjects
from hyperhive.wire.models import (
    AgentRequest,
    AgentStatus,
    Approval,
    DecisionRequest,
    Empty,
    HarnessState,
    PtyControl,
    PtyOpen,
    PtySession,
    SpawnerCommand,
    TurnStats,
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
        control = subjects.harness("bob", f"pty.{opened.session}.control")  # it opens watching
        assert (await bus.call(dashboard, control, PtyControl(), PtyControl, timeout=30)).control
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


@dataclass
class OneSlot:
    """Two agents woken at once on a host with one turn slot: the holder's CLI runs (held by the scripted API until
    cancelled), the waiter's harness says it waits for the slot."""

    spawner: Spawner
    api: MessagesApi
    states: dict[str, States]
    holder: str
    waiting: str


async def one_slot(stack: AsyncExitStack, hive: TestHive, spawner_state: Path) -> OneSlot:
    api = stack.enter_context(serve_messages_api())
    api.script(Hold(120))  # whichever turn comes first holds its slot until it is cancelled
    api.responder = lambda body: [Text("Done.")]
    settings = real_harness_spawner(hive, spawner_state, api).model_copy(update={"turn_slots": 1})
    spawner = await start_spawner(stack, settings)
    await start_broker(stack, broker_settings(hive))
    watch = await hive.connect("dashboard")
    states = {name: States(await watch.subscribe(subjects.agent_event(name, "turn_state"))) for name in AB}
    for i, name in enumerate(AB):
        await spawner.apply(SpawnerCommand(approval_id=i + 1, action="spawn", agent=name))
    assert await asyncio.to_thread(api.holding.wait, 60)  # the loop serves the hive meanwhile
    waiting = await next_of(states, "thinking", "turn slots")
    holder = next(name for name in AB if name != waiting)
    return OneSlot(spawner, api, states, holder, waiting)


async def test_with_one_turn_slot_a_second_agent_waits_until_the_first_turn_ends(
    hive: TestHive, spawner_state: Path
) -> None:
    """The waiter runs once the holder's turn is over (cancelled here)."""
    async with AsyncExitStack() as stack:
        hold = await one_slot(stack, hive, spawner_state)
        assert len(hold.api.requests) == 1  # the waiter's CLI has not started
        await harness_call(hive, hold.holder, "cancel")
        await hold.states[hold.waiting].until("idle", timeout=60)
        assert len(hold.api.requests) == 2


async def test_a_turn_cancelled_while_it_waits_for_a_slot_ends_then_and_holds_no_slot(
    hive: TestHive, spawner_state: Path
) -> None:
    """The operator cancels the turn that waits for the one slot: it ends at once, not when a slot frees (it had
    waited on, up to the holder's whole turn), its CLI never starts, its messages go with its next turn, and its
    withdrawn ask is not granted a slot when the holder gives its back."""
    async with AsyncExitStack() as stack:
        hold = await one_slot(stack, hive, spawner_state)
        await harness_call(hive, hold.waiting, "cancel")
        cancelled = await hold.states[hold.waiting].until("idle", timeout=60)  # while the holder holds its slot
        assert "cancelled" in cancelled.note
        assert len(hold.api.requests) == 1  # only the holder's CLI ever ran
        assert hold.spawner.slots.holders == {hold.holder}
        await harness_call(hive, hold.holder, "cancel")
        await hold.states[hold.holder].until("idle", timeout=60)
        assert hold.spawner.slots.holders == set()  # the withdrawn ask was not granted the slot given back
        assert len(hold.api.requests) == 1


AB = ("alice", "bob")


async def next_of(states: dict[str, States], state: str, note: str) -> str:
    """Which agent first reaches `state` with `note`."""
    tasks = {asyncio.create_task(s.until(state, note, timeout=60)): name for name, s in states.items()}
    done, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    await runtime.cancelled(*pending)
    return tasks[next(iter(done))]
