"""The turn loop end to end: a message wakes the agent, the real claude CLI runs the turn, the model answers through
its tools, the message is acknowledged, the turn's figures are published, and the session and model carry over."""

import json
from contextlib import AsyncExitStack
from pathlib import Path

from hivetest.harness import alice_and_bob, harness_for
from hivetest.hive import TestHive
from hivetest.messages_api import Text, ToolUse, serve_messages_api
from hyperhive.inbox import Inbox
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentPolicy, Event, TurnStats


async def test_a_message_wakes_a_turn_whose_answer_reaches_the_sender(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        policy = AgentPolicy(agent="alice", model="scripted-model-a", allowedRecipients=["bob"])  # type: ignore[call-arg]
        seed, state, bob = await alice_and_bob(stack, hive, tmp_path, policy)
        stats_sub = await (await hive.connect("dashboard")).subscribe(subjects.agent("alice", subjects.STATS))
        turn_sub = await (await hive.connect("dashboard")).subscribe(subjects.agent_event("alice", "turn"))
        with serve_messages_api() as api:
            harness = await harness_for(stack, hive, "alice", seed, state, api)

            (state / "notes.md").write_text("twelve bytes")
            await bob.send("alice", "please confirm you are there")
            await bob.send("alice", "and a second one")
            api.script([ToolUse("mcp__hyperhive__send", {"to": "bob", "body": "here, and on it"})], [Text("Done.")])
            first = await harness.run_once(wait=10)
            assert first is not None
            assert first.stats.received == {"peer": 2}
            # The live view gets the prompt right after the CLI's init (which starts a turn's view afresh).
            kinds = [Event.model_validate_json((await turn_sub.next_msg(timeout=5)).data).data for _ in range(2)]
            assert (kinds[0]["type"], kinds[0]["subtype"]) == ("system", "init")
            assert "please confirm you are there" in kinds[1]["message"]["content"]
            sent = json.dumps(api.requests[0]["messages"])
            assert "From bob:\\nplease confirm you are there" in sent  # the wake prompt, as JSON text
            assert api.requests[0]["model"] == "scripted-model-a"

            # The operator's /model override is read at the next turn; the session goes on.
            (state / "hyperhive-model").write_text("scripted-model-b\n")
            await bob.send("alice", "and now?")
            api.script([Text("Still here.")])
            second = await harness.run_once(wait=10)
            assert second is not None
            assert api.requests[-1]["model"] == "scripted-model-b"
            assert second.session_id == first.session_id

        [m] = (await bob.recv(wait=10)).messages
        assert (m.sender, m.body) == ("alice", "here, and on it")
        stats = TurnStats.model_validate_json((await stats_sub.next_msg(timeout=5)).data)
        assert (stats.exit_class, stats.tool_calls, stats.messages) == ("ok", {"mcp__hyperhive__send": 1}, 2)
        # What only the harness knows: the inbox when the turn began, what it read and sent per party, the notes.
        assert (stats.inbox_depth, stats.received, stats.sent, stats.notes_bytes) == (2, {"peer": 2}, {"peer": 1}, 12)
        # Both messages were acknowledged when their turns started: a new harness finds nothing waiting.
        fresh = Inbox(await hive.connect("alice"), "alice", held_file=state / "harness-held.json")
        await fresh.open()
        assert (await fresh.take())[0] == []


async def test_turn_stats_report_the_model_the_cli_ran(hive: TestHive, tmp_path: Path) -> None:
    """The CLI may rewrite a model name it is given; the figures say what actually ran (its init event, which is
    also what the API was asked for)."""
    async with AsyncExitStack() as stack:
        policy = AgentPolicy(agent="alice", model="claude-opus-4-1", allowedRecipients=["bob"])  # type: ignore[call-arg]
        seed, state, bob = await alice_and_bob(stack, hive, tmp_path, policy)
        with serve_messages_api() as api:
            harness = await harness_for(stack, hive, "alice", seed, state, api)
            await bob.send("alice", "which model?")
            api.script([Text("This one.")])
            result = await harness.run_once(wait=10)
        assert result is not None
        [init] = [e for e in result.events if e.get("type") == "system" and e.get("subtype") == "init"]
        assert result.stats.model == init["model"] == api.requests[0]["model"]
