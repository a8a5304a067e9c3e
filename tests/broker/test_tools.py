"""Tools as the operator admits them (`hivectl tool add`): a CI job or a script with a key of its own, admitted by
the real spawner, sending through the real broker on real nats-server credentials — only where its grant says, to
agents that take messages from tools, each message audited, and cut off at once when revoked."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path
from subprocess import PIPE

import nats.errors
import pytest
from nats.aio.client import Client

from hive_approver.__main__ import start as start_approver
from hive_harness.service import wake_prompt
from hive_spawner.__main__ import start as start_spawner
from hive_spawner.service import Spawner
from hivetest.agents import Agents, admit_tool, operator_call
from hivetest.hive import TestHive
from hivetest.services import approver_settings, spawner_settings
from hyperhive import bus
from hyperhive.wire import subjects, tooling
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    AgentPolicy,
    AnswerRequest,
    AskReply,
    AskRequest,
    Empty,
    Event,
    Question,
    QuestionRef,
    SpawnerCommand,
    ToolGrant,
    ToolMessage,
    ToolRequest,
    ToolsReply,
)
from hyperhive.wire.names import OPERATOR

DOCS = Path(__file__).resolve().parents[2] / "docs" / "tooling.md"


@pytest.fixture
async def real_spawner(hive: TestHive, spawner_state: Path) -> AsyncIterator[Spawner]:
    """The real spawner, which admits tools (their NATS users and grants)."""
    async with AsyncExitStack() as stack:
        yield await start_spawner(stack, spawner_settings(hive, spawner_state))


async def refuse_tools(hive: TestHive, agents: Agents, name: str) -> None:
    """`acceptTools = false` in `name`'s agent.nix, as the spawner would publish it."""
    kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
    revision = await kv.put(name, bus.encode(AgentPolicy(agent=name, acceptTools=False)))  # type: ignore[call-arg]
    assert agents.broker is not None
    await agents.broker.policy.caught_up(revision)


async def spawner_call(hive: TestHive, verb: str, request: Empty | ToolRequest, reply: type) -> object:
    return await bus.call(await hive.connect(OPERATOR), subjects.operator(subjects.SPAWNER, verb), request, reply, 30)


async def test_a_tool_sends_to_an_agent_it_may_and_the_agent_reads_who_wrote(
    hive: TestHive, agents: Agents, real_spawner: Spawner
) -> None:
    alice = await agents.agent("alice", [])
    audit = await (await hive.connect(subjects.DASHBOARD)).subscribe(subjects.event("tool_message", "alice"))
    ci = await admit_tool(hive, "ci", ["alice"])
    sent = await ci.send("alice", "build 812 failed")
    assert sent.recipients == ["alice"]
    [message] = (await alice.recv()).messages
    assert (message.sender, message.body) == ("tool:ci", "build 812 failed")
    assert "From tool ci:\nbuild 812 failed" in wake_prompt([message], 0)
    record = ToolMessage.model_validate(Event.model_validate_json((await audit.next_msg(timeout=5)).data).data)
    assert (record.tool, record.id, record.recipients, record.bytes) == ("tool:ci", sent.id, ["alice"], 16)


async def test_a_tool_is_refused_where_its_grant_does_not_reach(
    hive: TestHive, agents: Agents, real_spawner: Spawner
) -> None:
    await agents.agent("alice", [])
    await agents.agent("bob", [])
    await refuse_tools(hive, agents, "carol")
    ci = await admit_tool(hive, "ci", ["alice", "carol", "nobody"])
    for to, code in [
        ("bob", ErrorCode.NOT_ALLOWED),
        ("*", ErrorCode.NOT_ALLOWED),
        ("carol", ErrorCode.NOT_ALLOWED),
        ("nobody", ErrorCode.UNKNOWN_RECIPIENT),
    ]:
        with pytest.raises(HiveError) as refused:
            await ci.send(to, "hello")
        assert refused.value.code == code, (to, refused.value)
    refusals = await agents.events("message_refused")
    assert [(e["data"]["from"], e["data"]["to"]) for e in refusals] == [("tool:ci", t) for t in ("bob", "*", "carol")]
    assert "acceptTools" in str(refusals[-1]["data"]["reason"])


async def test_a_broadcasting_tool_reaches_every_agent_that_takes_tools(
    hive: TestHive, agents: Agents, real_spawner: Spawner
) -> None:
    alice = await agents.agent("alice", [])
    bob = await agents.agent("bob", [])
    await refuse_tools(hive, agents, "bob")
    monitor = await admit_tool(hive, "monitor", [], broadcast=True)
    sent = await monitor.send("*", "disk 91% full")
    assert sorted(sent.recipients) == ["alice", "manager"]
    assert [m.body for m in (await alice.recv()).messages] == ["disk 91% full"]
    assert (await bob.recv()).messages == []


async def test_a_revoked_tool_is_cut_off_at_once(hive: TestHive, agents: Agents, real_spawner: Spawner) -> None:
    await agents.agent("alice", [])
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    ci = await admit_tool(hive, "ci", ["alice"], allow_reconnect=False, closed_cb=on_closed)
    listed = await spawner_call(hive, "tools", Empty(), ToolsReply)
    assert isinstance(listed, ToolsReply)
    assert [(t.name, t.send) for t in listed.tools] == [("ci", ["alice"])]
    await spawner_call(hive, "tool-revoke", ToolRequest(name="ci"), ToolGrant)
    await asyncio.wait_for(closed.wait(), 10)  # the server closed its connection as the reload took effect
    again = Client()
    try:
        with pytest.raises(nats.errors.Error, match="Authorization Violation"):
            await again.connect(hive.url, nkeys_seed=str(ci.seed), allow_reconnect=False, connect_timeout=5)
    finally:
        await again.close()
    assert (await spawner_call(hive, "tools", Empty(), ToolsReply)) == ToolsReply(tools=[])


async def test_a_tool_and_an_agent_never_share_a_name(hive: TestHive, agents: Agents, real_spawner: Spawner) -> None:
    real_spawner.repos.create(
        "alice", grant=real_spawner.backend.grant_manager
    )  # an agent of the hive, as a spawn makes it
    with pytest.raises(HiveError) as taken:
        await admit_tool(hive, "alice", [])
    assert taken.value.code == ErrorCode.CONFLICT
    await admit_tool(hive, "ci", [])
    with pytest.raises(HiveError) as also:
        await real_spawner.apply(SpawnerCommand(approval_id=7, action="spawn_draft", agent="ci"))
    assert also.value.code == ErrorCode.CONFLICT
    assert "tool's name" in also.value.message


async def test_a_tool_asks_the_operator_and_reads_the_answer_itself(
    hive: TestHive, agents: Agents, real_spawner: Spawner, database_url: str
) -> None:
    async with AsyncExitStack() as stack:
        await start_approver(stack, approver_settings(hive, database_url))
        nightly = await admit_tool(hive, "nightly", [], ask=True)
        asked = await bus.call(
            nightly.nc,
            subjects.tool("nightly", "ask"),
            AskRequest(question="Deploy 812?", options=["yes", "no"]),
            AskReply,
        )
        operator = await hive.connect(OPERATOR)
        await operator_call(operator, "answer", AnswerRequest(id=asked.id, choices=["yes"]), Question)
        answered = await bus.call(nightly.nc, subjects.tool("nightly", "question"), QuestionRef(id=asked.id), Question)
        assert (answered.asker, answered.status, answered.answer) == ("tool:nightly", "answered", "yes")
        ci = await admit_tool(hive, "ci", ["alice"])  # no --ask: neither verb is its to call
        for verb, body in (("ask", AskRequest(question="may I?")), ("question", QuestionRef(id=asked.id))):
            with pytest.raises(HiveError) as refused:
                await bus.call(ci.nc, subjects.tool("ci", verb), body, Question, timeout=2)
            assert refused.value.code == ErrorCode.UNAVAILABLE  # no responder it may reach: the server said no


async def test_the_documented_nats_py_example_sends_for_real(
    hive: TestHive, agents: Agents, real_spawner: Spawner
) -> None:
    alice = await agents.agent("alice", [])
    ci = await admit_tool(hive, tooling.TOOL, [tooling.EXAMPLE["to"]])
    program = tooling.nats_py_example(url=hive.url, seed=str(ci.seed))
    ran = await asyncio.create_subprocess_exec(sys.executable, "-c", program, stdout=PIPE, stderr=PIPE)
    out, err = await asyncio.wait_for(ran.communicate(), 60)  # the hive in this process answers meanwhile
    assert ran.returncode == 0, err.decode()
    assert "'recipients': ['alice']" in out.decode()
    assert [m.body for m in (await alice.recv()).messages] == [tooling.EXAMPLE["body"]]
    assert tooling.cli_example() in DOCS.read_text()


def test_docs_tooling_md_is_what_the_wire_says() -> None:
    assert DOCS.read_text() == tooling.render(), "run: make wire-docs"
