"""Harnesses on a test hive: an agent's real harness running the real claude CLI against the scripted Messages API,
its states as the dashboard sees them, and what an agent could leave in its state dir."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nats.aio.subscription import Subscription
from pydantic import BaseModel

from hive_broker.__main__ import start as start_broker
from hive_harness.service import Harness
from hive_harness.settings import HarnessSettings
from hive_harness.turn import TurnResult
from hivetest.agents import Agent, Agents
from hivetest.claude import CLAUDE, SCRIPTED_ENV
from hivetest.hive import TestHive
from hivetest.messages_api import MessagesApi, Reply, Text, ToolUse, serve_messages_api
from hivetest.services import broker_settings
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentPolicy, Empty, Event, HarnessReply, HarnessState


async def harness_for(
    stack: AsyncExitStack, hive: TestHive, agent: str, seed: Path, state: Path, api: MessagesApi, **overrides: Any
) -> Harness:
    """`agent`'s harness on this test's NATS, its inbox open, its CLI pointed at the scripted API. Its policy file is
    `policy_file(state)` (where `alice_and_bob` writes it), outside the agent's state dir."""
    settings = HarnessSettings(
        nats_url=hive.url,
        nats_creds=seed,
        state_dir=state,
        agent=agent,
        claude_env={**SCRIPTED_ENV, "ANTHROPIC_BASE_URL": api.url},
        **{
            "claude": [str(CLAUDE)],
            "policy_file": policy_file(state),
            "cli_home": state.parent / "no-home",
            **overrides,
        },
    )
    harness = Harness(await hive.connect(agent), settings)
    await harness.open(stack)
    return harness


class States:
    """The harness's state changes as the dashboard sees them (`hive.agent.<name>.event.turn_state`)."""

    def __init__(self, sub: Subscription) -> None:
        self.sub = sub
        self.seen: list[HarnessState] = []

    @classmethod
    async def watch(cls, hive: TestHive, agent: str) -> States:
        nc = await hive.connect("dashboard")
        return cls(await nc.subscribe(subjects.agent_event(agent, "turn_state")))

    async def until(self, state: str, note: str = "", timeout: float = 30) -> HarnessState:
        """The next change to `state` whose note contains `note`."""
        while True:
            event = Event.model_validate_json((await self.sub.next_msg(timeout=timeout)).data)
            self.seen.append(HarnessState.model_validate(event.data))
            if self.seen[-1].state == state and note in self.seen[-1].note:
                return self.seen[-1]


async def harness_call(hive: TestHive, agent: str, verb: str, payload: BaseModel | None = None) -> HarnessReply:
    """What the dashboard or hivectl does: a harness-plane request."""
    nc = await hive.connect("dashboard")
    return await bus.call(nc, subjects.harness(agent, verb), payload or Empty(), HarnessReply, timeout=60)


def policy_file(state: Path) -> Path:
    """Where a test's spawner stand-in puts the agent's policy: beside its state dir, as /run/hive is in a sandbox."""
    return state.parent / "run-hive" / "policy.json"


async def alice_and_bob(
    stack: AsyncExitStack, hive: TestHive, tmp_path: Path, policy: AgentPolicy
) -> tuple[Path, Path, Agent]:
    """A broker; alice, whose harness is under test, with `policy` in her state dir; and bob, who writes to her.
    Returns alice's credential, alice's state dir, and bob."""
    agents = Agents(hive, await start_broker(stack, broker_settings(hive)))
    seed = hive.add_agent("alice")
    await agents.set_policy("alice", list(policy.allowed_recipients))
    bob = await agents.agent("bob", ["alice"])
    state = tmp_path / "alice"
    state.mkdir()
    policy_file(state).parent.mkdir(exist_ok=True)
    policy_file(state).write_text(policy.model_dump_json(by_alias=True))
    return seed, state, bob


@dataclass
class Scene:
    """A serving harness for alice (the real CLI against `api`), bob who writes to her, and her states as seen."""

    harness: Harness
    api: MessagesApi
    state: Path
    bob: Agent
    states: States


async def scene(stack: AsyncExitStack, hive: TestHive, tmp_path: Path, policy: AgentPolicy, **overrides: Any) -> Scene:
    seed, state, bob = await alice_and_bob(stack, hive, tmp_path, policy)
    states = await States.watch(hive, "alice")
    api = stack.enter_context(serve_messages_api())
    harness = await harness_for(stack, hive, "alice", seed, state, api, **overrides)
    await harness.serve(stack)
    return Scene(harness, api, state, bob, states)


@dataclass
class BashRun:
    """One turn of alice's in which the model makes `calls`; what each call got back, and what was published."""

    result: TurnResult
    state: Path
    answers: list[str]  # the tool result the model read for each call, in order
    denied_events: list[dict[str, Any]]


async def run_bash_calls(
    stack: AsyncExitStack,
    hive: TestHive,
    tmp_path: Path,
    policy: AgentPolicy,
    calls: list[ToolUse],
    plant: Callable[[Path], None] = lambda state: None,
) -> BashRun:
    """alice's harness runs one turn with the real CLI in which the model makes `calls`; `plant` first writes what
    an agent could have left in its state dir."""
    seed, state, bob = await alice_and_bob(stack, hive, tmp_path, policy)
    plant(state)
    events = await (await hive.connect("dashboard")).subscribe(subjects.agent_event("alice", "bash_denied"))
    with serve_messages_api() as api:
        turns: list[Reply] = [[call] for call in calls]
        api.script(*turns, [Text("Done.")])
        harness = await harness_for(stack, hive, "alice", seed, state, api)
        await bob.send("alice", "run your commands")
        result = await harness.run_once(wait=10)
        answers = [_tool_result(r["messages"][-1]) for r in api.requests[1:]]
    assert result is not None
    denied = [
        Event.model_validate_json((await events.next_msg(timeout=10)).data).data
        for _ in range(result.stats.bash_denied)
    ]
    return BashRun(result, state, answers, denied)


def _tool_result(message: dict[str, Any]) -> str:
    blocks = [b for b in message.get("content") or [] if isinstance(b, dict) and b.get("type") == "tool_result"]
    content = blocks[0].get("content") if blocks else ""
    return content if isinstance(content, str) else json.dumps(content)


def plant_everything(state: Path) -> None:
    """What an agent that could write its state dir would leave: startup files, settings with hooks, a program named
    ls, a module that shadows the hook's imports."""
    marker = state / "planted-ran"
    for rc in (".bashrc", ".bash_profile", ".profile", ".bash_login", ".zshrc"):
        (state / rc).write_text(f"touch {marker}-{rc}\n")
    hook = {"type": "command", "command": f"touch {marker}-hook"}
    settings = json.dumps({"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [hook]}]}})
    (state / ".claude").mkdir()  # the CLI's config dir and the working dir's project settings, both
    for name in ("settings.json", "settings.local.json"):
        (state / ".claude" / name).write_text(settings)
    (state / "ls").write_text(f"#!/bin/sh\ntouch {marker}-ls\n")
    (state / "ls").chmod(0o755)
    (state / "asyncio.py").write_text(f"open({str(marker)!r} + '-asyncio', 'w')\n")
