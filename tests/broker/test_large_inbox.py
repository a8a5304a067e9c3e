"""The operator's view of a huge inbox reads only what it shows: `hivectl inbox` of an inbox of 200,000 messages
used to scan them all (3.6-4.2 s here, past hivectl's 5 s timeout on a slower machine: `No answer on
'hive.broker.inbox' within 5s.`)."""

from __future__ import annotations

from datetime import UTC, datetime

from nats.aio.client import Client

from hivetest.agents import Agents
from hivetest.hive import TestHive
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.models import InboxReply, InboxRequest, Message

HUGE = 200_000


async def fill(hive: TestHive, owner: str, count: int) -> None:
    """Store `count` messages in `owner`'s inbox, as fast as the server takes them: plain publishes, then one
    acknowledged publish, which JetStream stores after everything before it on the same connection."""
    nc = await hive.connect(subjects.BROKER)
    js = nc.jetstream()
    config = (await js.stream_info(subjects.INBOX_STREAM)).config
    config.max_msgs_per_subject = count  # beyond the hive's own limit: the view must not care how many there are
    await js.update_stream(config)
    at = datetime.now(UTC)
    for n in range(count - 1):
        message = Message(id=f"m{n:08d}", sender="alice", to=owner, body=f"message {n}", sent_at=at)
        await nc.publish(subjects.inbox(owner), bus.encode(message))
    last = Message(id=f"m{count - 1:08d}", sender="alice", to=owner, body=f"message {count - 1}", sent_at=at)
    await js.publish(subjects.inbox(owner), bus.encode(last))


async def test_the_view_of_a_huge_inbox_answers_with_its_last_messages(
    hive: TestHive, agents: Agents, operator_nc: Client
) -> None:
    await agents.agent("bob", [])
    await fill(hive, "bob", HUGE)
    stream = await (await hive.connect(subjects.BROKER)).jetstream().stream_info(subjects.INBOX_STREAM)
    assert stream.state.messages == HUGE

    # The same call `hivectl inbox bob` makes, with its own 5 s timeout; and what it cost the broker to answer.
    assert agents.broker is not None
    received = agents.broker.nc.stats["in_msgs"]
    view = await bus.call(
        operator_nc, subjects.operator(subjects.BROKER, "inbox"), InboxRequest(owner="bob"), InboxReply
    )
    assert [e.message.body for e in view.entries] == [f"message {n}" for n in range(HUGE - 50, HUGE)]
    assert {e.state for e in view.entries} == {"pending"}
    assert view.pending == HUGE
    read = agents.broker.nc.stats["in_msgs"] - received
    assert read < 500, f"the broker read {read} messages to show 50"
    print(f"inbox view: the last 50 of {HUGE} messages shown, {read} messages read by the broker to answer")
