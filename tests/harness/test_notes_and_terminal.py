"""Notes compaction after a turn (a secondary claude session rewrites notes.md atomically, with a backup, or leaves
it untouched) and the agent's terminal relayed over NATS."""

import asyncio
import json
import stat
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from nats.aio.client import Client
from nats.aio.subscription import Subscription

from hive_harness.terminal import MAX_SESSIONS, Terminals
from hivetest.harness import alice_and_bob, harness_call, harness_for, scene
from hivetest.hive import TestHive
from hivetest.messages_api import ApiError, Hold, Text, serve_messages_api
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AgentPolicy, Event, NotesCompacted, PtyControl, PtyOpen, PtyResize, PtySession


async def take_control(nc: Client, session: str, control: bool = True) -> bool:
    """What the dashboard does at "take control" (a terminal opens watching: its input is ignored until then)."""
    where = subjects.harness("alice", f"pty.{session}.control")
    return (await bus.call(nc, where, PtyControl(control=control), PtyControl, timeout=60)).control


async def alices_terminal(
    stack: AsyncExitStack, hive: TestHive, cwd: Path, *, cols: int, rows: int
) -> tuple[Client, PtySession, Subscription, Subscription, str]:
    """alice's terminals served; one opened by "ada" as the dashboard opens it, its output and end subscribed; and
    the prefix of its input subjects."""
    hive.add_agent("alice")
    await Terminals(await hive.connect("alice"), "alice", cwd=cwd).serve(stack)
    dashboard = await hive.connect("dashboard")
    request = PtyOpen(cols=cols, rows=rows, opened_by="ada")
    opened = await bus.call(dashboard, subjects.harness("alice", "pty.open"), request, PtySession)
    out = await dashboard.subscribe(subjects.agent("alice", f"pty.{opened.session}.out"))
    closed = await dashboard.subscribe(subjects.agent("alice", f"pty.{opened.session}.closed"))
    return dashboard, opened, out, closed, subjects.harness("alice", f"pty.{opened.session}")


POLICY = AgentPolicy(agent="alice", notesThreshold=600)  # type: ignore[call-arg]
SHORT_NOTES = "# Notes\n- all 40 steps done\n"
LONG_NOTES = "# Notes\n" + "".join(f"- step {i}: done, nothing left to do here\n" for i in range(40))


async def test_notes_past_the_threshold_are_rewritten_with_a_backup(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        seed, state, bob = await alice_and_bob(stack, hive, tmp_path, POLICY)
        notes = state / "notes.md"
        notes.write_text(LONG_NOTES)
        stats = await (await hive.connect("dashboard")).subscribe(subjects.agent("alice", subjects.STATS))
        with serve_messages_api() as api:
            harness = await harness_for(stack, hive, "alice", seed, state, api)
            api.script([Text("Noted.")], [Text("Noted again.")])
            api.script_side([Text("# Notes\n- all 40 steps done")], ApiError(500, "api_error", "overloaded"))
            await bob.send("alice", "carry on")
            await harness.run_once(wait=10)

            assert notes.read_text() == SHORT_NOTES
            [backup] = (state / "notes-backups").iterdir()
            assert backup.read_text() == LONG_NOTES
            assert "- step 39: done" in json.dumps(api.side_requests[0]["messages"])
            assert api.side_requests[0]["tools"] == []  # the rewrite has no tools

            # A failed rewrite leaves the notes exactly as they were.
            notes.write_text(LONG_NOTES + "- one more\n")
            await bob.send("alice", "and again")
            await harness.run_once(wait=10)
            assert notes.read_text() == LONG_NOTES + "- one more\n"

        records = []
        while len(records) < 2:
            msg = await stats.next_msg(timeout=5)
            if b"hive.notes.compacted.v1" in msg.data:
                records.append(NotesCompacted.model_validate_json(msg.data))
        assert (records[0].ok, records[0].before_bytes) == (True, len(LONG_NOTES))
        assert records[0].after_bytes == len(SHORT_NOTES)
        assert (records[1].ok, records[1].after_bytes) == (False, records[1].before_bytes)
        assert "no notes" in records[1].reason


async def test_a_terminal_echoes_input_resizes_and_closes(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        dashboard, opened, out, closed, control = await alices_terminal(stack, hive, tmp_path, cols=100, rows=30)

        async def read_until(text: str) -> str:
            seen = ""
            while text not in seen:
                seen += (await out.next_msg(timeout=10)).data.decode(errors="replace")
            return seen

        await dashboard.publish(f"{control}.in", b"echo watched-$((2*3))\n")  # watching: ignored
        assert await take_control(dashboard, opened.session)
        await dashboard.publish(f"{control}.in", b"echo hi-$((6*7))\n")
        assert "watched-6" not in await read_until("hi-42")  # input is in order: had it gone in, it came first
        await dashboard.publish(f"{control}.resize", bus.encode(PtyResize(cols=120, rows=40)))
        await dashboard.publish(f"{control}.in", b"stty size\n")
        await read_until("40 120")

        await dashboard.publish(f"{control}.close", b"")
        await closed.next_msg(timeout=10)
        # Both are in the events stream: the audit trail is stored, not only sent.
        stored = await dashboard.jetstream().subscribe(subjects.agent_event("alice", "*"), ordered_consumer=True)
        kinds = [Event.model_validate_json((await stored.next_msg(timeout=5)).data) for _ in range(2)]
        assert [(e.type, e.data["opened_by"], e.data["session"]) for e in kinds] == [
            ("pty_opened", "ada", opened.session),
            ("pty_closed", "ada", opened.session),
        ]


async def test_terminals_are_limited_and_end_with_the_shell(hive: TestHive, tmp_path: Path) -> None:
    hive.add_agent("alice")
    async with AsyncExitStack() as stack:
        terminals = Terminals(await hive.connect("alice"), "alice", cwd=tmp_path)
        await terminals.serve(stack)
        dashboard = await hive.connect("dashboard")
        sessions = [
            await bus.call(dashboard, subjects.harness("alice", "pty.open"), PtyOpen(), PtySession)
            for _ in range(MAX_SESSIONS)
        ]
        with pytest.raises(HiveError) as full:
            await bus.call(dashboard, subjects.harness("alice", "pty.open"), PtyOpen(), PtySession)
        assert full.value.code == ErrorCode.CONFLICT

        first = sessions[0].session
        closed = await dashboard.subscribe(subjects.agent("alice", f"pty.{first}.closed"))
        await take_control(dashboard, first)
        await dashboard.publish(subjects.harness("alice", f"pty.{first}.in"), b"exit\n")
        await closed.next_msg(timeout=10)
        assert first not in terminals.sessions
        await asyncio.wait_for(
            bus.call(dashboard, subjects.harness("alice", "pty.open"), PtyOpen(), PtySession), 10
        )  # a place came free


async def test_a_large_paste_arrives_whole_and_the_session_is_recorded(hive: TestHive, tmp_path: Path) -> None:
    """100 KB in one input message: far more than the PTY's buffer takes at once, so most of it waits for the shell
    to read; every byte arrives, in order. The recording (asciicast v2) holds what was typed and what was shown."""
    async with AsyncExitStack() as stack:
        dashboard, opened, out, closed, control = await alices_terminal(stack, hive, tmp_path, cols=90, rows=20)
        assert await take_control(dashboard, opened.session)
        paste = b"".join(f"{i:05d} {'x' * 93}\n".encode() for i in range(1024))
        assert len(paste) == 100 * 1024
        for data in (b"cat > pasted.txt\n", paste, b"\x04", b"echo done-$((1+1))\n"):
            await dashboard.publish(f"{control}.in", data)
        seen = b""
        while b"done-2" not in seen.replace(b"done-$((1+1))", b""):
            seen += (await out.next_msg(timeout=30)).data
        assert (tmp_path / "pasted.txt").read_bytes() == paste
        await dashboard.publish(f"{control}.close", b"")
        await closed.next_msg(timeout=10)

    [cast] = (tmp_path / "terminals").iterdir()
    assert cast.name.endswith(f"-{opened.session}.cast")
    assert stat.S_IMODE(cast.stat().st_mode) == 0o600
    header, *events = [json.loads(line) for line in cast.read_text().splitlines()]
    assert (header["version"], header["width"], header["height"]) == (2, 90, 20)
    assert "ada" in header["title"]
    typed = "".join(text for _, kind, text in events if kind == "i")
    assert typed == (b"cat > pasted.txt\n" + paste + b"\x04echo done-$((1+1))\n").decode()
    assert "done-2" in "".join(text for _, kind, text in events if kind == "o")
    assert [e[0] for e in events] == sorted(e[0] for e in events)


async def test_no_terminal_opens_where_its_recording_cannot_be_made(hive: TestHive, tmp_path: Path) -> None:
    """The agent planted a link where the recordings go: the harness writes through no link, and opens no shell."""
    hive.add_agent("alice")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = tmp_path / "state"
    state.mkdir()
    (state / "terminals").symlink_to(elsewhere)
    async with AsyncExitStack() as stack:
        terminals = Terminals(await hive.connect("alice"), "alice", cwd=state)
        await terminals.serve(stack)
        dashboard = await hive.connect("dashboard")
        with pytest.raises(HiveError) as refused:
            await bus.call(dashboard, subjects.harness("alice", "pty.open"), PtyOpen(), PtySession)
        assert refused.value.code == ErrorCode.UNAVAILABLE
        assert terminals.sessions == {}
    assert list(elsewhere.iterdir()) == []


async def test_taking_control_waits_for_the_turn_and_holds_the_loop_until_given_back_or_closed(
    hive: TestHive, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        s = await scene(stack, hive, tmp_path, AgentPolicy(agent="alice"))
        terminals = Terminals(await hive.connect("alice"), "alice", cwd=s.state, turns=s.harness)
        await terminals.serve(stack)
        dashboard = await hive.connect("dashboard")
        opened = await bus.call(dashboard, subjects.harness("alice", "pty.open"), PtyOpen(), PtySession)
        ended: list[str] = []

        # A turn is running: control comes once it has ended (here, cancelled), never while it runs.
        s.api.script(Hold())
        await s.bob.send("alice", "start something long")
        turn = asyncio.create_task(s.harness.run_once(wait=10))
        assert await asyncio.to_thread(s.api.holding.wait, 60)
        turn.add_done_callback(lambda _: ended.append("turn"))
        taking = asyncio.create_task(take_control(dashboard, opened.session))
        taking.add_done_callback(lambda _: ended.append("control"))
        await dashboard.flush()
        await harness_call(hive, "alice", "cancel")
        assert await taking
        assert ended == ["turn", "control"]
        held = await s.states.until("paused", "control of a terminal")

        # While held, a message waits; given back, its turn runs.
        s.api.script([Text("Back to work.")])
        await s.bob.send("alice", "and now this")
        waiting = asyncio.create_task(s.harness.run_once(wait=10))
        assert not await take_control(dashboard, opened.session, control=False)
        assert (await waiting) is not None
        await s.states.until("thinking")
        after = s.states.seen.index(held)
        assert [st.state for st in s.states.seen[after:]] == ["paused", "idle", "thinking"]  # none ran while held

        # Closing the terminal gives control back too.
        assert await take_control(dashboard, opened.session)
        await s.states.until("paused", "control of a terminal")
        await dashboard.publish(subjects.harness("alice", f"pty.{opened.session}.close"), b"")
        await s.states.until("idle")
        s.api.script([Text("Free again.")])
        await s.bob.send("alice", "one more")
        assert (await s.harness.run_once(wait=10)) is not None


async def test_control_is_given_back_when_its_controller_goes_silent(hive: TestHive, tmp_path: Path) -> None:
    """A dashboard that died with control would hold the agent's turns for ever: three missed beats give it back."""
    async with AsyncExitStack() as stack:
        s = await scene(stack, hive, tmp_path, AgentPolicy(agent="alice"))
        terminals = Terminals(await hive.connect("alice"), "alice", cwd=s.state, turns=s.harness, alive_seconds=0.1)
        await terminals.serve(stack)
        dashboard = await hive.connect("dashboard")
        opened = await bus.call(dashboard, subjects.harness("alice", "pty.open"), PtyOpen(), PtySession)
        assert await take_control(dashboard, opened.session)  # and then says nothing more
        await s.states.until("paused", "control of a terminal")
        await s.states.until("idle")
        assert not terminals.sessions[opened.session].control
        s.api.script([Text("Free again.")])
        await s.bob.send("alice", "one more")
        assert (await s.harness.run_once(wait=10)) is not None
