"""A full store (JetStream's `max_file_store` standing in for a full disk) and full inboxes: a send is refused with
a code that says why and stores nothing; decisions taken meanwhile are committed with what they call for, which is
queued once there is room; and reading frees the room (delivered messages make way), so the hive recovers."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from nats.aio.client import Client

from hive_approver.service import Approver
from hivectl.natsserver import NatsServer
from hivetest.agents import Caller, operator_call
from hivetest.hive import TestHive
from hivetest.services import TestSpawner
from hyperhive import bus
from hyperhive.inbox import Inbox
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AgentPolicy, Approval, DecisionRequest, SendReply, SendRequest

from .conftest import alice_writes_to_bob

STORE_BYTES = 1 << 20
BODY = "x" * 8000


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """This module's hive runs on a server whose store holds one MiB."""
    server = NatsServer(tmp_path / "nats-small", port=-1, max_file_store=STORE_BYTES).start()
    yield server
    server.stop()


async def send(nc: Client, to: str, body: str, **extra: object) -> SendReply:
    req = SendRequest(to=to, body=body, **extra)  # type: ignore[arg-type]
    return await bus.call(nc, subjects.agent("alice", "send"), req, SendReply)


async def read_all(inbox: Inbox) -> int:
    """Take and acknowledge everything in the inbox, as a harness does turn by turn."""
    count = 0
    while got := (await inbox.take(max_messages=32))[0]:
        await inbox.ack([m.token for m in got])
        count += len(got)
    return count


async def test_a_full_store_refuses_sends_clearly_keeps_decisions_and_recovers_once_read(
    hive: TestHive,
    approver: Approver,
    manager: Caller,
    spawner: TestSpawner,
    operator_nc: Client,
) -> None:
    async with AsyncExitStack() as stack:
        _, alice = await alice_writes_to_bob(stack, hive)
        bob = Inbox(await hive.connect("bob"), "bob")
        await bob.open()
        sent, refused = 0, None
        while refused is None and sent < 1000:  # bounded: a store of one MiB holds ~120 of these
            try:
                await send(alice, "bob", BODY)
                sent += 1
            except HiveError as exc:
                refused = exc
        assert refused is not None, f"{sent} sends and the store is not full"
        assert refused.code == ErrorCode.UNAVAILABLE, refused
        assert "store is full" in refused.message
        stream = await (await hive.connect(subjects.BROKER)).jetstream().stream_info(subjects.INBOX_STREAM)
        assert stream.state.messages == sent  # the refused send stored nothing

        # Decisions while the store is full: answered with the decision, never `internal`.
        spawn = await manager.request("spawn", agent="scout", description="a helper")
        tool = await manager.request("tool_permission", agent="manager", tool="Bash", input={"command": "ls"})
        decided = [
            await operator_call(operator_nc, "approve", DecisionRequest(id=a.id), Approval) for a in (spawn, tool)
        ]
        assert [d.status for d in decided] == ["applying", "approved"]

        # bob reads what waits for him: the delivered messages make way, and the hive goes on.
        assert await read_all(bob) == sent
        after = await send(alice, "bob", "room again")
        assert after.recipients == ["bob"]
        got, _ = await bob.take(max_messages=8)
        assert [m.body for m in got] == ["room again"]
        await spawner.applied.wait()  # the spawn's command, held in the approver's outbox, is queued now
        assert [c.approval_id for c in spawner.commands] == [spawn.id]
    print(
        f"full store: {sent} sends stored before it was full, the next refused as unavailable, "
        f"2 decisions taken while full, {len(spawner.commands)} command queued once there was room"
    )


async def inbox_limit(hive: TestHive, limit: int) -> None:
    """Lower the inboxes' limit on this test's server (the hive's is `streams.INBOX_LIMIT`)."""
    js = (await hive.connect(subjects.BROKER)).jetstream()
    config = (await js.stream_info(subjects.INBOX_STREAM)).config
    config.max_msgs_per_subject = limit
    await js.update_stream(config)


async def test_a_full_inbox_refuses_with_inbox_full_and_takes_more_once_read(hive: TestHive) -> None:
    async with AsyncExitStack() as stack:
        _, alice = await alice_writes_to_bob(stack, hive)
        kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
        hive.add_agent("carol")
        await kv.put("carol", bus.encode(AgentPolicy(agent="carol")))
        await kv.put("alice", bus.encode(AgentPolicy(agent="alice", allowedRecipients=["bob", "*"])))  # type: ignore[call-arg]
        await inbox_limit(hive, 5)
        bob, carol = Inbox(await hive.connect("bob"), "bob"), Inbox(await hive.connect("carol"), "carol")
        await bob.open()
        await carol.open()
        for n in range(5):
            await send(alice, "bob", f"m{n}")
        with pytest.raises(HiveError) as full:
            await send(alice, "bob", "one too many")
        assert full.value.code == ErrorCode.INBOX_FULL
        assert "inbox of bob is full: 5 messages wait" in full.value.message

        # A broadcast that reaches carol and not bob says so, and its id finishes it without doubling.
        with pytest.raises(HiveError) as partly:
            await send(alice, "*", "to all", id="broadcast-1")
        assert partly.value.code == ErrorCode.INBOX_FULL
        assert "not for bob." in partly.value.message
        assert "carol" in partly.value.message

        taken, _ = await bob.take(max_messages=2)
        await bob.ack([m.token for m in taken])  # two read: two delivered messages can make way
        await send(alice, "*", "to all", id="broadcast-1")
        got_bob = [m.body for m in (await bob.take(max_messages=16))[0]]
        got_carol = [m.body for m in (await carol.take(max_messages=16))[0]]
        assert got_bob == ["m2", "m3", "m4", "to all"]
        assert got_carol == ["to all"]  # once
    print("full inbox: 5 of 5 stored, the 6th refused as inbox_full, a broadcast finished by its id without doubling")
