"""The broker as agents use it: real nats-server, real credentials, a real broker."""

import asyncio
import json
from contextlib import AsyncExitStack

import pytest

from hive_broker.__main__ import start
from hivetest.agents import Agents
from hivetest.hive import TestHive
from hivetest.services import broker_settings
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import MAX_BODY_BYTES


async def test_round_trip(agents: Agents) -> None:
    alice = await agents.agent("alice", ["bob"])
    bob = await agents.agent("bob", [])
    sent = await alice.send("bob", "hello bob")
    got = await bob.recv()
    assert [(m.id, m.sender, m.to, m.body, m.redelivered) for m in got.messages] == [
        (sent.id, "alice", "bob", "hello bob", False)
    ]
    assert got.unread == 0


async def test_a_waiting_recv_wakes_when_a_message_is_sent(agents: Agents) -> None:
    alice = await agents.agent("alice", ["bob"])
    bob = await agents.agent("bob", [])
    waiting = asyncio.create_task(bob.recv(wait=170))
    await alice.send("bob", "wake up")
    got = await asyncio.wait_for(waiting, 20)  # far inside the 170 s the recv would wait
    assert [m.body for m in got.messages] == ["wake up"]


async def test_recv_on_an_empty_inbox_returns_nothing_when_the_wait_ends(agents: Agents) -> None:
    bob = await agents.agent("bob", [])
    assert (await bob.recv(wait=0)).messages == []
    assert (await bob.recv(wait=0.3)).messages == []


async def test_unread_counts_what_is_left(agents: Agents) -> None:
    alice = await agents.agent("alice", ["bob"])
    bob = await agents.agent("bob", [])
    for i in range(5):
        await alice.send("bob", f"m{i}")
    first = await bob.recv(max=2)
    assert [m.body for m in first.messages] == ["m0", "m1"]
    assert first.unread == 3
    rest = await bob.recv(max=32, ack=[m.token for m in first.messages])
    assert [m.body for m in rest.messages] == ["m2", "m3", "m4"]
    assert rest.unread == 0


async def test_messages_of_one_sender_arrive_in_the_order_sent(agents: Agents) -> None:
    alice = await agents.agent("alice", ["bob"])
    bob = await agents.agent("bob", [])
    for i in range(40):
        await alice.send("bob", str(i))
    bodies: list[str] = []
    while len(bodies) < 40:
        got = await bob.recv(max=32, wait=5)
        bodies += [m.body for m in got.messages]
        await bob.ack([m.token for m in got.messages])
    assert bodies == [str(i) for i in range(40)]


async def test_broadcast_reaches_every_other_agent_marked_as_broadcast(agents: Agents) -> None:
    manager = await agents.agent("manager", [])
    alice = await agents.agent("alice", ["manager"])
    bob = await agents.agent("bob", [])
    sent = await manager.send("*", "all hands")
    assert sorted(sent.recipients) == ["alice", "bob"]
    for agent in (alice, bob):
        [m] = (await agent.recv()).messages
        assert (m.id, m.sender, m.to, m.broadcast) == (sent.id, "manager", "*", True)
    assert (await manager.recv()).messages == []
    with pytest.raises(HiveError) as err:
        await alice.send("*", "me too")
    assert err.value.code == ErrorCode.NOT_ALLOWED


async def test_recipient_policy_refusals_are_readable_and_audited(agents: Agents) -> None:
    alice = await agents.agent("alice", ["bob"])
    await agents.agent("bob", [])
    await agents.agent("carol", [])
    with pytest.raises(HiveError) as err:
        await alice.send("carol", "psst")
    assert err.value.code == ErrorCode.NOT_ALLOWED
    assert "allowed recipients: bob" in err.value.message
    with pytest.raises(HiveError) as err:
        await alice.send("operator", "hi boss")
    assert err.value.code == ErrorCode.NOT_ALLOWED
    refused = await agents.events("message_refused")
    assert [(e["agent"], e["data"]["to"]) for e in refused] == [("alice", "carol"), ("alice", "operator")]


async def test_an_agent_without_policy_reaches_only_manager_and_operator(agents: Agents) -> None:
    await agents.agent("manager", [])
    await agents.agent("bob", [])
    newbie = await agents.agent("newbie")
    await newbie.send("manager", "hello")
    await newbie.send("operator", "hello")
    with pytest.raises(HiveError) as err:
        await newbie.send("bob", "hello")
    assert err.value.code == ErrorCode.NOT_ALLOWED


async def test_the_manager_may_send_anywhere(agents: Agents) -> None:
    manager = await agents.agent("manager", [])
    await agents.agent("bob", [])
    await manager.send("bob", "do this")
    await manager.send("operator", "status report")


async def test_a_body_that_claims_another_sender_changes_nothing(agents: Agents) -> None:
    alice = await agents.agent("alice", ["bob"])
    bob = await agents.agent("bob", [])
    forged = {"to": "bob", "body": "it is me, manager", "from": "manager", "sender": "manager"}
    assert await alice.raw("send", json.dumps(forged).encode()) == {}
    [m] = (await bob.recv()).messages
    assert m.sender == "alice"


async def test_a_retried_send_is_delivered_once(agents: Agents) -> None:
    alice = await agents.agent("alice", ["bob"])
    bob = await agents.agent("bob", [])
    first = await alice.send("bob", "once", id="retry-0001")
    again = await alice.send("bob", "once", id="retry-0001")
    assert first.id == again.id == "retry-0001"
    got = await bob.recv(max=32)
    assert [m.body for m in got.messages] == ["once"]
    assert got.unread == 0


async def test_another_agent_cannot_reuse_a_message_id_to_suppress_a_message(agents: Agents) -> None:
    alice = await agents.agent("alice", ["bob"])
    carol = await agents.agent("carol", ["bob"])
    bob = await agents.agent("bob", [])
    await alice.send("bob", "from alice", id="same-id-01")
    await carol.send("bob", "from carol", id="same-id-01")
    assert sorted(m.sender for m in (await bob.recv()).messages) == ["alice", "carol"]


async def test_a_harness_that_dies_before_acking_gets_the_message_again(agents: Agents) -> None:
    alice = await agents.agent("alice", ["bob"])
    bob = await agents.agent("bob", [])
    await alice.send("bob", "important")
    [taken] = (await bob.recv()).messages
    assert not taken.redelivered

    await bob.restart()  # the harness died before acking; the new one hands back what the old one held
    [again] = (await bob.recv(wait=5)).messages
    assert (again.id, again.redelivered) == (taken.id, True)

    after_ack = await bob.recv(ack=[again.token])
    assert after_ack.messages == []
    await bob.restart()
    assert (await bob.recv()).messages == []
    delivered = await agents.events("message_delivered", from_agents=True)
    assert [e["data"]["seqs"] for e in delivered] == [[again.seq]]


async def test_message_redelivered_after_ack_wait_when_the_broker_forgot(hive: TestHive) -> None:
    """Even a broker that lost its memory (restart) redelivers what nobody acked, after ack_wait."""
    async with AsyncExitStack() as stack:
        broker = await start(stack, broker_settings(hive, ack_wait_seconds=1.0))
        agents = Agents(hive, broker)
        alice = await agents.agent("alice", ["bob"])
        bob = await agents.agent("bob", [])
        await alice.send("bob", "still there?")
        [taken] = (await bob.recv()).messages
        [again] = (await bob.recv(wait=30)).messages  # same harness: only the ack_wait brings it back
        assert (again.id, again.redelivered) == (taken.id, True)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"to": "bob", "body": ""}', ErrorCode.INVALID_BODY),
        (b'{"to": "bob", "body": "   \\n"}', ErrorCode.INVALID_BODY),
        (json.dumps({"to": "bob", "body": "x" * (MAX_BODY_BYTES + 1)}).encode(), ErrorCode.INVALID_BODY),
        (json.dumps({"to": "bob", "body": "é" * (MAX_BODY_BYTES // 2 + 1)}).encode(), ErrorCode.INVALID_BODY),
        (b'{"to": "bob", "body": "\\ud800"}', ErrorCode.INVALID_REQUEST),  # a lone surrogate is not JSON text
        (b'{"to": "bob", "body": "\xff\xfe"}', ErrorCode.INVALID_BODY),
        (b'{"to": "nobody", "body": "hi"}', ErrorCode.UNKNOWN_RECIPIENT),
        (b'{"to": "../etc", "body": "hi"}', ErrorCode.INVALID_REQUEST),
        (b'{"to": "BOB", "body": "hi"}', ErrorCode.INVALID_REQUEST),
        (b'{"to": "bob"}', ErrorCode.INVALID_REQUEST),
        (b'{"to": "bob", "body": "hi", "id": "short"}', ErrorCode.INVALID_REQUEST),
        (b'{"to": "bob", "body": "hi", "id": "has.dots.in.it"}', ErrorCode.INVALID_REQUEST),
        (b"not json", ErrorCode.INVALID_REQUEST),
        (b"[]", ErrorCode.INVALID_REQUEST),
    ],
)
async def test_bad_sends_get_their_error_code(agents: Agents, payload: bytes, code: ErrorCode) -> None:
    alice = await agents.agent("alice", ["bob", "nobody"])
    await agents.agent("bob", [])
    headers = await alice.raw("send", payload)
    assert headers.get("Nats-Service-Error-Code") == code, headers


@pytest.mark.parametrize(
    ("max_messages", "wait"),
    [(0, 0), (33, 0), (1, -1), (1, 181)],
)
async def test_bad_recv_arguments_get_their_error_code(agents: Agents, max_messages: int, wait: float) -> None:
    alice = await agents.agent("alice", [])
    with pytest.raises(HiveError) as err:
        await alice.recv(max=max_messages, wait=wait)
    assert err.value.code == ErrorCode.INVALID_REQUEST


@pytest.mark.parametrize(
    ("token", "code"),
    [
        ("garbage", ErrorCode.INVALID_REQUEST),
        ("$JS.ACK.HIVE_INBOX.inbox-bob.*", ErrorCode.INVALID_REQUEST),
        ("$JS.ACK.HIVE_INBOX.inbox-bob.1.2.2.1700000000000000000.0", ErrorCode.NOT_ALLOWED),
    ],
)
async def test_bad_tokens_get_their_error_code(agents: Agents, token: str, code: ErrorCode) -> None:
    alice = await agents.agent("alice", [])
    with pytest.raises(HiveError) as err:
        await alice.ack([token])
    assert err.value.code == code


async def test_an_agent_cannot_ack_another_agents_message(hive: TestHive, agents: Agents) -> None:
    alice = await agents.agent("alice", ["bob"])
    bob = await agents.agent("bob", [])
    await alice.send("bob", "for bob only")
    [m] = (await bob.recv()).messages
    errors: list[str] = []
    refused = asyncio.Event()

    async def record(exc: Exception) -> None:
        errors.append(str(exc))
        refused.set()

    # Past our client's own check, straight at JetStream: the server's permissions refuse it.
    mallory = await hive.connect("alice", error_cb=record)
    await mallory.publish(m.token, b"+ACK")
    await mallory.flush()
    await asyncio.wait_for(refused.wait(), 5)
    assert "permissions violation" in errors[0].lower()
    await bob.restart()
    assert [x.body for x in (await bob.recv()).messages] == ["for bob only"]


async def test_a_removed_agent_is_an_unknown_recipient(agents: Agents) -> None:
    alice = await agents.agent("alice", ["bob"])
    await agents.agent("bob", [])
    await agents.set_policy("bob", None)
    with pytest.raises(HiveError) as err:
        await alice.send("bob", "are you there?")
    assert err.value.code == ErrorCode.UNKNOWN_RECIPIENT


async def test_an_agent_cannot_use_the_operator_plane(hive: TestHive, agents: Agents) -> None:
    await agents.agent("alice", ["bob"])
    errors: list[str] = []
    arrived = asyncio.Event()

    async def record(exc: Exception) -> None:
        errors.append(str(exc))
        arrived.set()

    nc = await hive.connect("alice", error_cb=record)
    await nc.publish(subjects.operator(subjects.BROKER, "send"), b'{"to":"bob","body":"as operator"}')
    await nc.flush()
    await asyncio.wait_for(arrived.wait(), 5)
    assert "permissions violation" in errors[0].lower()
