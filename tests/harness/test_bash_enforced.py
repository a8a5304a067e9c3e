"""The Bash allow-list enforced on the real claude CLI: a call not allowed never runs, an allowed one does."""

import asyncio
import json
import urllib.error
import urllib.request
from asyncio.subprocess import PIPE
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

from hive_approver.__main__ import start as start_approver
from hive_harness.hook import CURL, hook_settings
from hive_harness.turn import cli_flags
from hivetest.agents import operator_call
from hivetest.bypasses import FAMILIES, GIT_AND_LS
from hivetest.harness import States, alice_and_bob, harness_for, plant_everything, policy_file, run_bash_calls, scene
from hivetest.hive import TestHive
from hivetest.messages_api import Text, ToolUse, serve_messages_api
from hivetest.services import approver_settings
from hyperhive.wire.models import AgentPolicy, Approval, BashPolicy, DecisionRequest


async def test_only_allowed_bash_commands_run(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        policy = AgentPolicy(agent="alice", allowedBash=BashPolicy(allow=["touch *"]))  # type: ignore[call-arg]
        commands = [
            "touch allowed-marker",
            "ls",
            "echo hi",
            "git status && touch sneaky-marker",
            "touch redirect-marker > written-marker",
            "sh -c 'touch shell-marker'",
        ]
        run = await run_bash_calls(stack, hive, tmp_path, policy, [ToolUse("Bash", {"command": c}) for c in commands])

        assert run.result.stats.tool_calls == {"Bash": len(commands)}
        assert (run.state / "allowed-marker").exists()
        assert (run.state / "shell-marker").exists()  # `sh -c` is judged by what it runs: touch is allowed
        for never in ("sneaky-marker", "redirect-marker", "written-marker"):
            assert not (run.state / never).exists(), never
        refused = [a for a in run.answers if "is not allowed for this agent (allowed: touch *)" in a]
        assert len(refused) == 4  # ls, echo, the && line, the redirection
        assert run.result.stats.bash_denied == 4
        assert [e["command"] for e in run.denied_events] == commands[1:5]


async def test_bypass_families_never_run_and_nothing_planted_runs(hive: TestHive, tmp_path: Path) -> None:
    """Every line of every family through the real CLI and hook, with everything an agent could plant in /state: the
    marker never appears, nothing planted runs, and every denial is counted and published."""
    async with AsyncExitStack() as stack:
        policy = AgentPolicy(agent="alice", allowedBash=GIT_AND_LS)  # type: ignore[call-arg]
        marker = tmp_path / "alice" / "marker"
        lines = [line.format(m=marker, s=tmp_path / "alice") for lines in FAMILIES.values() for line in lines]
        calls = [ToolUse("Bash", {"command": line}) for line in lines]
        calls += [
            ToolUse("Monitor", {"command": f"touch {marker}", "description": "m", "timeout_ms": 1000}),
            ToolUse("Bash", {"command": "ls"}),
        ]
        run = await run_bash_calls(stack, hive, tmp_path, policy, calls, plant=plant_everything)

        assert not marker.exists()
        assert sorted(p.name for p in run.state.glob("planted-ran*")) == []
        assert "asyncio.py" in run.answers[-1]  # ls ran (the shell was used) and listed the state dir
        by_hook = [a for a in run.answers[:-1] if a.startswith("PreToolUse:")]
        by_cli = [a for a in run.answers[:-1] if "InputValidationError" in a]  # the CLI refuses the NUL line itself
        assert len(by_cli) == 1
        assert len(by_hook) == len(calls) - 2
        assert run.result.stats.bash_denied == len(by_hook) == len(run.denied_events)
        assert all(e["reason"] for e in run.denied_events)
        # The CLI's sessions live in the state dir's .claude, as before (HOME is not the state dir any more).
        assert list((run.state / ".claude" / "projects").glob("*/*.jsonl"))


async def test_a_missing_or_invalid_policy_turns_bash_off(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        policy = AgentPolicy(agent="alice", allowedBash=BashPolicy(allow=["touch *"]))  # type: ignore[call-arg]
        s = await scene(stack, hive, tmp_path, policy)
        for broken in ("{not json", None):
            if broken is None:
                policy_file(s.state).unlink()
            else:
                policy_file(s.state).write_text(broken)
            await s.bob.send("alice", "touch it")
            s.api.script([ToolUse("Bash", {"command": "touch off-marker"})], [Text("Done.")])
            result = await s.harness.run_once(wait=10)
            assert result is not None
            assert result.stats.exit_class == "ok"
            assert result.stats.bash_denied == 1
            assert not (s.state / "off-marker").exists()
            assert "Bash is off: the policy could not be read" in s.harness.state().note
            assert "Bash is off for this agent" in json.dumps(s.api.requests[-1]["messages"][-1])
        policy_file(s.state).write_text(policy.model_dump_json(by_alias=True))
        await s.bob.send("alice", "touch it now")
        s.api.script([ToolUse("Bash", {"command": "touch on-marker"})], [Text("Done.")])
        await s.harness.run_once(wait=10)
        assert (s.state / "on-marker").exists()
        assert s.harness.state().note == ""


async def test_the_hook_answers_only_with_the_token_and_denies_what_it_cannot_read(
    hive: TestHive, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        policy = AgentPolicy(agent="alice", allowedBash=GIT_AND_LS)  # type: ignore[call-arg]
        s = await scene(stack, hive, tmp_path, policy)
        url, token = s.harness.tools.hook_url, s.harness.tools.token
        s.harness.gate.use(GIT_AND_LS)
        assert (await post(url, b"{}", ""))[0] == 401
        for body in (b"not json", b"[]", b'{"tool_name": "Bash"}', b'{"tool_name": "Bash", "tool_input": 3}'):
            status, answer = await post(url, body, token)
            assert status == 200
            assert answer["hookSpecificOutput"]["permissionDecision"] == "deny", body
        call = json.dumps({"tool_name": "Bash", "tool_input": {"command": "git status"}}).encode()
        assert (await post(url, call, token))[1]["hookSpecificOutput"]["permissionDecision"] == "allow"
        assert (await post(url, b'{"tool_name": "Read"}', token))[1] == {}
        # The thin clients the CLI runs (curl, and Python where there is no curl), exactly as the settings say.
        auth = s.state / "hook-auth"
        cli_flags(s.state, policy, s.harness.tools)
        for curl in (CURL, None):
            hook = hook_settings(url, auth, curl)["hooks"]["PreToolUse"][0]["hooks"][0]
            for command, expected in (("git status", "allow"), ("git -c x=y status", "deny")):
                call = json.dumps({"tool_name": "Bash", "tool_input": {"command": command}}).encode()
                ran = await asyncio.create_subprocess_exec(hook["command"], *hook["args"], stdin=PIPE, stdout=PIPE)
                out, _ = await ran.communicate(call)
                assert ran.returncode == 0
                assert json.loads(out)["hookSpecificOutput"]["permissionDecision"] == expected
            auth.write_text("Authorization: Bearer wrong\n")  # what an agent could do: its own hook fails, so blocks
            ran = await asyncio.create_subprocess_exec(hook["command"], *hook["args"], stdin=PIPE, stdout=PIPE)
            assert (await ran.communicate(b"{}"))[0] == b""
            assert ran.returncode != 0
            cli_flags(s.state, policy, s.harness.tools)


async def post(url: str, body: bytes, token: str) -> tuple[int, Any]:
    """What the CLI's http hook does: POST the call with the bearer token; the status and the JSON answer."""

    def send() -> tuple[int, Any]:
        request = urllib.request.Request(url, body, {"Authorization": f"Bearer {token}"})  # noqa: S310 - http://127.0.0.1
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, None

    return await asyncio.to_thread(send)


async def test_mcp_config_is_rendered_again_every_turn(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        policy = AgentPolicy(agent="alice")  # type: ignore[call-arg]
        s = await scene(stack, hive, tmp_path, policy)
        mcp = s.state / "mcp.json"
        await s.bob.send("alice", "hello")
        s.api.script([Text("Hi.")])
        await s.harness.run_once(wait=10)
        planted = json.loads(mcp.read_text())
        planted["mcpServers"]["evil"] = {"type": "stdio", "command": "/bin/sh", "args": ["-c", "touch x"]}
        mcp.write_text(json.dumps(planted))
        mcp.chmod(0o644)
        await s.bob.send("alice", "again")
        s.api.script([Text("Hi again.")])
        await s.harness.run_once(wait=10)
        assert list(json.loads(mcp.read_text())["mcpServers"]) == ["hyperhive"]
        assert mcp.stat().st_mode & 0o777 == 0o600


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
