"""The home page's snapshot reads what each harness last said of itself from HIVE_EVENTS, in one pass."""

from __future__ import annotations

from datetime import UTC, datetime

from hive_dashboard.hive import Hive
from hivetest.hive import TestHive
from hyperhive import events
from hyperhive.wire import subjects
from hyperhive.wire.models import HarnessState


def state(agent: str, now: str, model: str) -> HarnessState:
    return HarnessState(agent=agent, state=now, since=datetime.now(UTC), model=model, heartbeat_seconds=10)  # type: ignore[arg-type]


async def test_the_last_turn_state_of_every_agent_is_read_and_an_older_one_never_wins(hive: TestHive) -> None:
    nc = await hive.connect(subjects.DASHBOARD)
    reader = Hive(nc, nc.jetstream())
    assert await reader.last_turn_states() == {}
    for name in ("alice", "bob"):
        hive.add_agent(name)
    alice, bob = await hive.connect("alice"), await hive.connect("bob")
    await events.publish(alice, "turn_state", state("alice", "thinking", "m1"), about="alice", by_agent=True)
    await events.publish(bob, "turn_state", state("bob", "idle", "m2"), about="bob", by_agent=True)
    await events.publish(alice, "turn_state", state("alice", "idle", "m3"), about="alice", by_agent=True)
    stored = await nc.jetstream().subscribe(f"{subjects.AGENT_PREFIX}.*.event.turn_state", ordered_consumer=True)
    for _ in range(3):  # all three are in the stream: what follows reads it as it is now
        await stored.next_msg(timeout=10)
    found = await reader.last_turn_states()
    assert {name: (s.state, s.model) for name, s in found.items()} == {"alice": ("idle", "m3"), "bob": ("idle", "m2")}
