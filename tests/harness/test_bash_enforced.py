"""The Bash allow-list enforced on the real claude CLI: a call not allowed never runs, an allowed one does."""

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path

from hive_approver.__main__ import start as start_approver
from hivetest.hive import TestHive
from hivetest.messages_api import Text, ToolUse, serve_messages_api
from hyperhive.wire.models import AgentPolicy, Approval, BashPolicy, DecisionRequest

from ..approver.conftest import approver_settings, operator_call
from .conftest import States, alice_and_bob, harness_for


async def test_only_allowed_bash_commands_run(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        policy = AgentPolicy(agent="alice", allowedBash=BashPolicy(allow=["touch"]))  # type: ignore[call-arg]
        seed, state, bob = await alice_and_bob(stack, hive, tmp_path, policy)
        commands = [
            "touch allowed-marker",
            "ls",
            "echo hi",
            "git status && touch sneaky-marker",
            "touch redirect-marker > written-marker",
            "sh -c 'touch shell-marker'",
        ]
        with serve_messages_api() as api:
            api.script(*([ToolUse("Bash", {"command": c})] for c in commands), [Text("Done.")])
            harness = await harness_for(stack, hive, "alice", seed, state, api)
            await bob.send("alice", "run your commands")
            result = await harness.run_once(wait=10)
            results = [json.dumps(r["messages"][-1]) for r in api.requests[1:]]

        assert result is not None
        assert result.stats.tool_calls == {"Bash": len(commands)}
        assert (state / "allowed-marker").exists()
        assert (state / "shell-marker").exists()  # `sh -c` is judged by what it runs: touch is allowed
        for never in ("sneaky-marker", "redirect-marker", "written-marker"):
            assert not (state / never).exists(), never
        refused = [r for r in results if "is not in this agent's allowedBash" in r]
        assert len(refused) == 4  # ls, echo, the && line, the redirection


async def test_an_ask_command_waits_for_the_operator(hive: TestHive, tmp_path: Path, database_url: str) -> None:
    async with AsyncExitStack() as stack:
        await start_approver(stack, approver_settings(hive, database_url))
        policy = AgentPolicy(agent="alice", allowedBash=BashPolicy(ask=["rm"]))  # type: ignore[call-arg]
        seed, state, bob = await alice_and_bob(stack, hive, tmp_path, policy)
        for name in ("keep-me", "remove-me"):
            (state / name).write_text("x")
        operator = await hive.connect("operator")
        added = await (await hive.connect("dashboard")).subscribe("hive.events.approval_added.alice")

        async def operator_decides() -> list[str]:
            decided = []
            for verb in ("deny", "approve"):  # the first ask is denied, the second approved
                event = json.loads((await added.next_msg(timeout=60)).data)
                await operator_call(operator, verb, DecisionRequest(id=event["data"]["id"]), Approval)
                decided.append(event["data"]["input"]["command"])
            return decided

        with serve_messages_api() as api:
            api.script(
                [ToolUse("Bash", {"command": "rm keep-me"})],
                [ToolUse("Bash", {"command": "rm remove-me"})],
                [Text("Done.")],
            )
            harness = await harness_for(stack, hive, "alice", seed, state, api)
            await harness.serve(stack)
            states = await States.watch(hive, "alice")
            await bob.send("alice", "clean up")
            decisions = asyncio.create_task(operator_decides())
            await harness.run_once(wait=10)
            assert await decisions == ["rm keep-me", "rm remove-me"]
            # While the hook waited, the dashboard saw the agent waiting for the operator, then thinking again.
            waiting = await states.until("waiting", "decision on request #")
            assert waiting.agent == "alice"
            await states.until("thinking")
        assert (state / "keep-me").exists()
        assert not (state / "remove-me").exists()
