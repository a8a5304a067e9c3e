"""When nats-server dies, the acks of its last moments can be lost, and JetStream brings those messages again as if
new — not marked redelivered. The same happens, for a whole history, when an inbox's consumer is lost and made again.
A harness recognises what it already had (its record survives its own restart) and never hands it on twice."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

from hivetest.hive import TestHive
from hyperhive import bus, runtime
from hyperhive.inbox import Handled, Inbox
from hyperhive.wire import subjects
from hyperhive.wire.models import SendReply, SendRequest

from .conftest import alice_writes_to_bob


async def test_messages_brought_again_as_new_are_never_handed_on_twice(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        _, alice = await alice_writes_to_bob(stack, hive)

        async def send(body: str) -> None:
            await bus.call(alice, subjects.agent("alice", "send"), SendRequest(to="bob", body=body), SendReply)

        record = tmp_path / "bob-state" / "handled.json"
        bob = Inbox(await hive.connect("bob"), "bob", handled=Handled(record))
        await bob.open()
        for n in range(3):
            await send(f"old {n}")
        had, _ = await bob.take(max_messages=8, wait=5)
        await bob.ack([m.token for m in had])
        assert [m.body for m in had] == ["old 0", "old 1", "old 2"]

        # The consumer's state is lost (as acks are in a crash): made again, it delivers everything as new.
        js = (await hive.connect(subjects.SPAWNER)).jetstream()
        await js.delete_consumer(subjects.INBOX_STREAM, "inbox-bob")
        restarted = Inbox(await hive.connect("bob"), "bob", handled=Handled(record))  # a new harness, same state
        await restarted.open()
        await send("new")
        got, _ = await restarted.take(max_messages=8, wait=5)
        while not got:
            got, _ = await restarted.take(max_messages=8, wait=5)
        print(f"duplicates: {4 - len(got)} of 4 brought again as new were dropped")
        assert [(m.body, m.redelivered) for m in got] == [("new", False)]
        consumer = await js.consumer_info(subjects.INBOX_STREAM, "inbox-bob")
        assert (consumer.num_pending, consumer.num_ack_pending) == (0, 1)  # the duplicates were acknowledged again


async def test_a_message_held_longer_than_ack_wait_is_not_brought_again(hive: TestHive) -> None:
    """Held while its agent is paused, or handed out by `recv` and not acked yet: kept alive, so ack_wait never
    delivers it to a second reader while the first still has it."""
    async with AsyncExitStack() as stack:
        _, alice = await alice_writes_to_bob(stack, hive, ack_wait_seconds=2)
        bob = Inbox(await hive.connect("bob"), "bob")
        await bob.open()
        await bus.call(alice, subjects.agent("alice", "send"), SendRequest(to="bob", body="hold me"), SendReply)
        held, _ = await bob.take(wait=5)
        assert [m.body for m in held] == ["hold me"]
        keeping = asyncio.ensure_future(bob.keep_alive(every=0.5))
        try:
            other = Inbox(await hive.connect("bob"), "bob")
            again, _ = await other.take(wait=4)  # twice the ack_wait: without the keep-alive it comes back here
        finally:
            await runtime.cancelled(keeping)
        assert again == []
        await bob.ack([m.token for m in held])
