"""A harness killed with SIGKILL after a turn started: the message that woke the turn was acknowledged when the turn
started, so JetStream will not bring it again — the next harness offers it again itself, saying the last turn did
not finish, and the sender gets its answer."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from hivetest.claude import CLAUDE, SCRIPTED_ENV
from hivetest.harness import alice_and_bob, policy_file
from hivetest.hive import TestHive
from hivetest.messages_api import Hold, Text, ToolUse, serve_messages_api
from hyperhive.process import Child
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentPolicy, TurnStats


def harness_process(hive: TestHive, seed: Path, state: Path, api_url: str) -> Child:
    """alice's harness as the spawner runs it: its own process, configured by the environment."""
    env = {
        **os.environ,
        "HIVE_NATS_URL": hive.url,
        "HIVE_NATS_CREDS": str(seed),
        "HIVE_AGENT": "alice",
        "HIVE_STATE_DIR": str(state),
        "HIVE_POLICY_FILE": str(policy_file(state)),
        "HIVE_CLI_HOME": str(state.parent / "no-home"),
        "HIVE_CLAUDE": json.dumps([str(CLAUDE)]),
        "HIVE_CLAUDE_ENV": json.dumps({**SCRIPTED_ENV, "ANTHROPIC_BASE_URL": api_url}),
    }
    return Child("harness", [sys.executable, "-I", "-m", "hive_harness"], env=env).start()


def kill_with_its_cli(harness: Child) -> None:
    """SIGKILL the harness and the CLI it runs (in a session of its own, as in a sandbox that dies whole)."""
    children = Path(f"/proc/{harness.pid}/task/{harness.pid}/children").read_text().split()
    harness.stop(signal.SIGKILL)
    for pid in children:
        os.killpg(int(pid), signal.SIGKILL)


async def test_a_message_whose_turn_was_killed_is_answered_by_the_next_harness(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        policy = AgentPolicy(agent="alice", allowedRecipients=["bob"])  # type: ignore[call-arg]
        seed, state, bob = await alice_and_bob(stack, hive, tmp_path, policy)
        stats = await (await hive.connect("dashboard")).subscribe(subjects.agent("alice", subjects.STATS))
        with serve_messages_api() as api:
            api.script(Hold())
            first = harness_process(hive, seed, state, api.url)
            await bob.send("alice", "please answer this once")
            assert await asyncio.to_thread(api.holding.wait, 60)  # the turn runs: its message was acked as it started
            kill_with_its_cli(first)

            api.script([ToolUse("mcp__hyperhive__send", {"to": "bob", "body": "answered"})], [Text("Done.")])
            second = harness_process(hive, seed, state, api.url)
            try:
                done = TurnStats.model_validate_json((await stats.next_msg(timeout=60)).data)
            finally:
                second.stop(signal.SIGTERM)
        assert done.exit_class == "ok"
        prompt = json.dumps(api.requests[-2]["messages"])
        assert "please answer this once" in prompt
        assert "did not finish" in prompt
        [answer] = (await bob.recv(wait=10)).messages
        assert answer.body == "answered"
