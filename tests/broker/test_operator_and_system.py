"""The operator's side of the broker, and system messages made from other services' events."""

from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client

from hivetest.agents import Agents
from hivetest.hive import TestHive
from hyperhive import bus
from hyperhive.inbox import Inbox
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    AgentStarted,
    ApprovalResolved,
    ContainerCrash,
    DepthsReply,
    Empty,
    Event,
    InboxReply,
    InboxRequest,
    OperatorSendRequest,
    QuestionAnswered,
    SendReply,
)


def op(verb: str) -> str:
    return subjects.operator(subjects.BROKER, verb)


async def test_operator_sends_to_an_agent_and_reads_its_own_inbox(agents: Agents, operator_nc: Client) -> None:
    alice = await agents.agent("alice", ["operator"])
    sent = await bus.call(operator_nc, op("send"), OperatorSendRequest(to="alice", body="hi alice"), SendReply)
    [m] = (await alice.recv()).messages
    assert (m.id, m.sender) == (sent.id, "operator")

    await alice.send("operator", "hi operator")
    mine = Inbox(operator_nc, "operator")
    await mine.open()
    got, _ = await mine.take(wait=5)
    assert [(m.sender, m.body) for m in got] == [("alice", "hi operator")]
    await mine.ack([m.token for m in got])
    assert (await mine.take())[0] == []

    with pytest.raises(HiveError) as err:
        await bus.call(operator_nc, op("send"), OperatorSendRequest(to="operator", body="me"), SendReply)
    assert err.value.code == ErrorCode.INVALID_REQUEST


async def test_inbox_view_shows_delivered_and_pending_and_depths(agents: Agents, operator_nc: Client) -> None:
    alice = await agents.agent("alice", ["bob"])
    bob = await agents.agent("bob", [])
    for body in ("one", "two", "three"):
        await alice.send("bob", body)
    first = await bob.recv(max=1)
    await bob.ack([m.token for m in first.messages])

    view = await bus.call(operator_nc, op("inbox"), InboxRequest(owner="bob", limit=2), InboxReply)
    assert [(e.message.body, e.state) for e in view.entries] == [("two", "pending"), ("three", "pending")]
    full = await bus.call(operator_nc, op("inbox"), InboxRequest(owner="bob"), InboxReply)
    assert [(e.message.body, e.state) for e in full.entries] == [
        ("one", "delivered"),
        ("two", "pending"),
        ("three", "pending"),
    ]
    assert full.pending == 2

    depths = await bus.call(operator_nc, op("depths"), Empty(), DepthsReply)
    assert depths.depths["bob"] == 2

    with pytest.raises(HiveError) as err:
        await bus.call(operator_nc, op("inbox"), InboxRequest(owner="ghost"), InboxReply)
    assert err.value.code == ErrorCode.NOT_FOUND
    with pytest.raises(HiveError) as err:
        await bus.call(operator_nc, op("inbox"), InboxRequest(owner="../x"), InboxReply)
    assert err.value.code == ErrorCode.INVALID_NAME


async def test_sweep_removes_old_delivered_messages_and_keeps_undelivered(agents: Agents) -> None:
    assert agents.broker is not None
    alice = await agents.agent("alice", ["bob"])
    bob = await agents.agent("bob", [])
    for body in ("old-1", "old-2", "unread"):
        await alice.send("bob", body)
    taken = await bob.recv(max=2)
    await bob.ack([m.token for m in taken.messages])

    assert await agents.broker.inboxes.sweep(timedelta(days=30)) == 0
    assert await agents.broker.inboxes.sweep(timedelta(0)) == 2
    view = await agents.broker.inboxes.view("bob", 50)
    assert [e.message.body for e in view.entries] == ["unread"]


async def publish_event(hive: TestHive, service: str, type_: str, about: str, data: object) -> None:
    nc = await hive.connect(service)
    event = Event(type=type_, agent=about, at=datetime.now(UTC), data=data.model_dump())  # type: ignore[attr-defined]
    await nc.jetstream().publish(subjects.event(type_, about), bus.encode(event))


async def test_events_become_system_messages_for_the_right_agent(hive: TestHive, agents: Agents) -> None:
    manager = await agents.agent("manager", [])
    alice = await agents.agent("alice", [])

    await publish_event(
        hive,
        "approver",
        "approval_resolved",
        "alice",
        ApprovalResolved(
            id=12, kind="apply_commit", agent="alice", requested_by="manager", status="denied", note="too broad"
        ),
    )
    [m] = (await manager.recv(wait=10)).messages
    assert m.sender == "system"
    assert "#12" in m.body
    assert "denied" in m.body
    assert "too broad" in m.body
    await manager.ack([m.token])

    await publish_event(
        hive,
        "approver",
        "question_answered",
        "alice",
        QuestionAnswered(id=3, asker="alice", question="Deploy now?", answer="yes"),
    )
    [m] = (await alice.recv(wait=10)).messages
    assert (m.sender, m.to) == ("system", "alice")
    assert "Deploy now?" in m.body
    assert m.body.endswith("yes")
    await alice.ack([m.token])

    await publish_event(hive, "spawner", "container_crash", "alice", ContainerCrash(agent="alice", exit_code=137))
    [m] = (await manager.recv(wait=10)).messages
    assert "alice" in m.body
    assert "137" in m.body

    await publish_event(hive, "spawner", "agent_started", "alice", AgentStarted(agent="alice", restarted=True))
    [m] = (await alice.recv(wait=10)).messages
    assert "restarted" in m.body
    assert "/state/notes.md" in m.body
