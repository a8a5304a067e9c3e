"""What happens around a turn, with the real claude CLI against the scripted API: the state the dashboard sees and the
heartbeat; pause; cancel mid-turn; a too-long prompt compacted and retried; a rate limit backed off; a missing login
waiting for the operator; the operator's /model and compact."""

import asyncio
import json
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from hive_harness.service import NEEDS_LOGIN
from hivetest.harness import harness_call, scene
from hivetest.hive import TestHive
from hivetest.messages_api import ApiError, Hold, Text
from hyperhive import bus, runtime
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AgentPolicy, Empty, HarnessState, ModelRequest, PauseRequest, TurnStats

POLICY = AgentPolicy(agent="alice", model="scripted-model-a", allowedRecipients=["bob"])  # type: ignore[call-arg]


def prompt_of(request: dict[str, object]) -> str:
    return json.dumps(request["messages"])


async def test_state_heartbeat_and_pause(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        s = await scene(stack, hive, tmp_path, POLICY, heartbeat_seconds=0.2)
        dashboard = await hive.connect("dashboard")
        beats = await dashboard.subscribe(subjects.agent("alice", subjects.HEARTBEAT))
        beat = HarnessState.model_validate_json((await beats.next_msg(timeout=5)).data)
        assert (beat.agent, beat.state, beat.model) == ("alice", "idle", "scripted-model-a")

        paused = await harness_call(hive, "alice", "pause", PauseRequest(paused=True))
        assert (paused.state.state, paused.state.paused) == ("paused", True)
        await s.bob.send("alice", "are you there?")
        turn = asyncio.create_task(s.harness.run_once(wait=10))
        await s.states.until("paused", "1 message")
        assert s.api.requests == []  # paused: the message waits, no turn runs

        s.api.script([Text("Back.")])
        await harness_call(hive, "alice", "pause", PauseRequest(paused=False))
        result = await turn
        assert result is not None
        assert result.stats.exit_class == "ok"
        assert "are you there?" in prompt_of(s.api.requests[0])
        await s.states.until("thinking")
        assert (await s.states.until("idle")).paused is False
        assert not (s.state / "hyperhive-paused").exists()


async def test_cancel_interrupts_the_turn_and_keeps_its_messages(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        s = await scene(stack, hive, tmp_path, POLICY)
        assert (await harness_call(hive, "alice", "cancel")).done.startswith("No turn was running")

        s.api.script(Hold())
        await s.bob.send("alice", "start something long")
        turn = asyncio.create_task(s.harness.run_once(wait=10))
        assert await asyncio.to_thread(s.api.holding.wait, 60)  # the model is mid-answer
        with pytest.raises(HiveError) as busy:
            await harness_call(hive, "alice", "compact")
        assert busy.value.code == ErrorCode.CONFLICT
        reply = await harness_call(hive, "alice", "cancel")
        assert reply.done.startswith("Cancelling")
        result = await turn
        assert result is not None
        assert result.stats.exit_class == "cancelled"
        await s.states.until("idle", "cancelled")

        # The cancelled turn's message goes with the next turn.
        s.api.script([Text("Picking it up again.")])
        await s.bob.send("alice", "and this too")
        again = await s.harness.run_once(wait=10)
        assert again is not None
        assert again.stats.exit_class == "ok"
        sent = prompt_of(s.api.requests[-1])
        assert "did not finish" in sent
        assert "start something long" in sent
        assert "and this too" in sent
        assert not (s.state / "carried.json").exists()


async def test_a_too_long_prompt_is_compacted_once_and_retried(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        s = await scene(stack, hive, tmp_path, POLICY)
        s.api.script([Text("First answer.")])
        await s.bob.send("alice", "first")
        assert await s.harness.run_once(wait=10) is not None

        too_long = ApiError(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")
        # The CLI compacts once by itself and retries; when it gives up, the harness compacts and retries.
        s.api.script(too_long, too_long, [Text("Answered after compaction.")])
        await s.bob.send("alice", "second")
        result = await s.harness.run_once(wait=10)
        assert result is not None
        assert (result.stats.exit_class, result.result_text) == ("ok", "Answered after compaction.")
        assert len(s.api.compactions) >= 1
        retried = prompt_of(s.api.requests[-1])
        assert "second" in retried
        assert "summarised by the scripted API" in retried  # the compacted session went on
        await s.states.until("compacting")


async def test_a_rate_limit_backs_off_and_retries(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        s = await scene(stack, hive, tmp_path, POLICY, backoff_seconds=0.05)
        stats = await (await hive.connect("dashboard")).subscribe(subjects.agent("alice", subjects.STATS))
        s.api.script(
            ApiError(429, "rate_limit_error", "Number of requests has exceeded your rate limit"), [Text("Fine now.")]
        )
        await s.bob.send("alice", "hello")
        result = await s.harness.run_once(wait=10)
        assert result is not None
        assert result.stats.exit_class == "ok"
        assert len(s.api.requests) == 2
        assert "rate limiting" in (await s.states.until("backing-off")).note
        classes = [TurnStats.model_validate_json((await stats.next_msg(timeout=5)).data).exit_class for _ in range(2)]
        assert classes == ["rate_limited", "ok"]


async def test_a_missing_login_waits_for_the_operator(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        s = await scene(stack, hive, tmp_path, POLICY)
        s.api.script(ApiError(401, "authentication_error", "invalid x-api-key"))
        await s.bob.send("alice", "hello?")
        result = await s.harness.run_once(wait=10)
        assert result is not None
        assert result.stats.exit_class == "needs_login"
        await s.states.until("needs-login", NEEDS_LOGIN)
        assert len(s.api.requests) == 1  # no retry loop against a key that does not work

        s.api.script([Text("Logged in now.")])
        await s.bob.send("alice", "try again")
        again = await s.harness.run_once(wait=10)
        assert again is not None
        assert again.stats.exit_class == "ok"
        assert "hello?" in prompt_of(s.api.requests[-1])
        await s.states.until("thinking")
        assert (await s.states.until("idle")).note == ""


async def test_model_override_and_compact_from_the_operator(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        s = await scene(stack, hive, tmp_path, POLICY)
        nothing = await harness_call(hive, "alice", "compact")
        assert nothing.done.startswith("There is no session yet")

        changed = await harness_call(hive, "alice", "model", ModelRequest(model="scripted-model-b"))
        assert (changed.state.model, changed.state.model_overridden) == ("scripted-model-b", True)
        s.api.script([Text("One.")])
        await s.bob.send("alice", "one")
        await s.harness.run_once(wait=10)
        assert s.api.requests[-1]["model"] == "scripted-model-b"

        compacted = await harness_call(hive, "alice", "compact")
        assert compacted.done == "The session was compacted."
        assert len(s.api.compactions) >= 1

        back = await harness_call(hive, "alice", "model", ModelRequest(model=None))
        assert (back.state.model, back.state.model_overridden) == ("scripted-model-a", False)
        s.api.script([Text("Two.")])
        await s.bob.send("alice", "two")
        await s.harness.run_once(wait=10)
        assert s.api.requests[-1]["model"] == "scripted-model-a"

        nc = await hive.connect("dashboard")
        for bad in ('{"model": "sonnet; rm -rf /"}', '{"model": ""}'):
            raw = await nc.request(subjects.harness("alice", "model"), bad.encode(), timeout=5)
            assert raw.headers is not None
            assert raw.headers.get("Nats-Service-Error-Code") == ErrorCode.INVALID_REQUEST
        assert (await bus.call(nc, subjects.harness("alice", "state"), Empty(), HarnessState)).model == (
            "scripted-model-a"
        )


async def test_a_lost_inbox_is_waited_out_not_a_crash(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        s = await scene(stack, hive, tmp_path, POLICY, backoff_seconds=0.05, recv_wait_seconds=5)
        loop = asyncio.create_task(s.harness.run_forever())
        try:
            js = (await hive.connect("dashboard")).jetstream()
            await js.delete_consumer(subjects.INBOX_STREAM, "inbox-alice")  # the hive loses alice's inbox
            lost = await s.states.until("backing-off", "not reachable")
            assert lost.agent == "alice"
            await s.states.until("idle")  # the harness opened its inbox again through the broker

            s.api.script([Text("Still here.")])
            await s.bob.send("alice", "are you back?")
            await s.states.until("thinking")
            await s.states.until("idle")
            assert "are you back?" in prompt_of(s.api.requests[-1])
            assert not loop.done()
        finally:
            await runtime.cancelled(loop)
