"""The host's turn slots (`hive.agent.<name>.slot`, served by the real spawner): no more agents run the claude CLI
at once than the host allows, each holds at most one, a waiter gets the slot given back, and a slot a stopped agent
held is given back."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from nats.aio.client import Client

from hive_spawner.__main__ import start as start_spawner
from hive_spawner.service import Spawner
from hivetest.hive import TestHive
from hivetest.services import spawner_settings
from hyperhive import bus
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.models import SlotReply, SlotRequest, SpawnerCommand


@pytest.fixture
async def spawner(hive: TestHive, spawner_state: Path) -> AsyncIterator[Spawner]:
    settings = spawner_settings(hive, spawner_state).model_copy(update={"turn_slots": 1})
    async with AsyncExitStack() as stack:
        yield await start_spawner(stack, settings)


async def slot(nc: Client, agent: str, wait: float = 0, *, release: bool = False) -> SlotReply:
    request = SlotRequest(wait_seconds=wait, release=release)
    return await bus.call(nc, subjects.agent(agent, "slot"), request, SlotReply, timeout=wait + 10)


async def test_one_slot_goes_to_one_agent_at_a_time(hive: TestHive, spawner: Spawner) -> None:
    names = ("alice", "bob", "carol")
    for name in names:
        hive.add_agent(name)
    alice, bob, carol = [await hive.connect(name) for name in names]
    assert (await slot(alice, "alice")).granted
    assert (await slot(alice, "alice")).granted  # asking again while holding it: still one slot
    assert (await slot(bob, "bob", wait=0.05)) == SlotReply(granted=False, held=1, limit=1)
    bob_waits = asyncio.create_task(slot(bob, "bob", wait=30))
    await slot(alice, "alice", release=True)
    assert await bob_waits == SlotReply(granted=True, held=1, limit=1)
    assert not (await slot(carol, "carol", wait=0.05)).granted
    await slot(bob, "bob", release=True)
    assert (await slot(carol, "carol")).granted


async def test_a_stopped_agents_slot_is_given_back(hive: TestHive, spawner: Spawner) -> None:
    await spawner.apply(SpawnerCommand(approval_id=1, action="spawn", agent="bob"))
    seed = spawner.backend.state_dir("bob") / "nats.nk"
    bob = await bus.connect(
        HiveSettings(nats_url=hive.url, nats_creds=seed), name="bob", inbox_prefix=subjects.reply_prefix("bob")
    )
    try:
        assert (await slot(bob, "bob")).granted  # bob's harness died mid-turn, say: it never gives it back
        await spawner.act("bob", "stop")
        assert spawner.slots.holders == set()
    finally:
        await bob.close()
