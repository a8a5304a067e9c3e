"""nats-server killed with SIGKILL and started again on the same store: every pull that was waiting is issued again
as soon as the connection is back, so the first message after the restart reaches a waiting harness at once (not
after the long poll's 180 s), and the broker's system-message relay goes on (not after its 30 s fetch)."""

from __future__ import annotations

import asyncio
import signal
import time
from contextlib import AsyncExitStack
from datetime import UTC, datetime

import pytest

from hive_broker.__main__ import start as start_broker
from hivectl.natsserver import NatsServer
from hivetest.hive import TestHive
from hivetest.services import broker_settings
from hyperhive import bus
from hyperhive.inbox import Inbox
from hyperhive.policies import Book
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentPolicy, ApprovalResolved, Event, SendReply, SendRequest

from .conftest import alice_writes_to_bob

LONG_POLL = 120  # what a harness waits for; before the fix the message came only when it ran out
WATCH_MENDS = 20  # seconds nats-py took to mend a KV watch by itself: two missed heartbeats, and more


def kill_and_restart(server: NatsServer) -> None:
    assert server.child is not None
    server.child.stop(signal.SIGKILL)
    server.start()  # the same port and store


async def test_a_waiting_harness_gets_the_first_message_after_a_nats_restart(hive: TestHive) -> None:
    server = hive.server
    assert isinstance(server, NatsServer)
    async with AsyncExitStack() as stack:
        broker, alice = await alice_writes_to_bob(stack, hive)
        bob = Inbox(await hive.connect("bob"), "bob")
        await bob.open()
        waiting = asyncio.ensure_future(bob.take(wait=LONG_POLL))
        await bob.nc.flush()  # the pull is on the server before it dies
        back = [asyncio.Event(), asyncio.Event()]
        for nc, event in zip((alice, broker.nc), back, strict=True):
            bus.on_reconnect(nc, event.set)
        kill_and_restart(server)
        restarted = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in back)), 30)
        await broker.nc.flush()  # the broker's endpoints are subscribed again
        request = SendRequest(to="bob", body="after")
        await bus.call(alice, subjects.agent("alice", "send"), request, SendReply)
        messages, _ = await asyncio.wait_for(waiting, LONG_POLL / 2)
        print(f"nats restart: first message delivered {time.monotonic() - restarted:.2f} s after the restart")
        assert [m.body for m in messages] == ["after"]


async def test_the_system_message_relay_goes_on_after_a_nats_restart(hive: TestHive) -> None:
    server = hive.server
    assert isinstance(server, NatsServer)
    async with AsyncExitStack() as stack:
        await start_broker(stack, broker_settings(hive))
        hive.add_agent("alice")
        alice = Inbox(await hive.connect("alice"), "alice")
        await alice.open()
        kill_and_restart(server)
        restarted = time.monotonic()
        approver = (await hive.connect(subjects.APPROVER)).jetstream()
        resolved = ApprovalResolved(id=3, kind="spawn", agent="bob", status="denied", requested_by="alice")  # type: ignore[call-arg]
        event = Event(type="approval_resolved", agent="bob", at=datetime.now(UTC), data=resolved.model_dump())
        await approver.publish(subjects.event("approval_resolved", "bob"), bus.encode(event))
        messages, _ = await alice.take(wait=20)  # the relay's own fetch lasts 30 s: its message must come sooner
        print(f"nats restart: system message delivered {time.monotonic() - restarted:.2f} s after the restart")
        assert [m.sender for m in messages] == ["system"]
        assert "#3" in messages[0].body


async def test_a_policy_written_after_a_nats_restart_reaches_the_broker_at_once(
    hive: TestHive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """nats-py's KV watch mends itself only at its heartbeat check (about 20 s after a restart); meanwhile the
    broker did not know an agent spawned just then. The book renews its watch when its connection is back."""
    monkeypatch.setattr(Book, "PATIENCE", 3600.0)  # only the reconnect may renew it here
    async with AsyncExitStack() as stack:
        broker = await start_broker(stack, broker_settings(hive))
        back = asyncio.Event()
        bus.on_reconnect(broker.nc, back.set)
        kill_and_restart(hive.server)
        await asyncio.wait_for(back.wait(), 30)
        kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
        revision = await kv.put("carol", bus.encode(AgentPolicy(agent="carol")))
        await asyncio.wait_for(broker.policy.caught_up(revision), WATCH_MENDS / 2)
        assert broker.policy.exists("carol")


async def test_a_watch_that_lost_its_consumer_is_renewed_when_a_change_is_late(hive: TestHive) -> None:
    """A watch whose consumer the server no longer has delivers nothing until nats-py's heartbeat check; a change
    waited for is late by `Book.PATIENCE`, not by that check."""
    async with AsyncExitStack() as stack:
        broker = await start_broker(stack, broker_settings(hive))
        js = (await hive.connect(subjects.SPAWNER)).jetstream()
        stream = f"KV_{subjects.POLICY_BUCKET}"
        for consumer in await js.consumers_info(stream):
            await js.delete_consumer(stream, consumer.name)
        kv = await js.key_value(subjects.POLICY_BUCKET)
        revision = await kv.put("carol", bus.encode(AgentPolicy(agent="carol")))
        await asyncio.wait_for(broker.policy.caught_up(revision), WATCH_MENDS / 2)
        assert broker.policy.exists("carol")
