"""Chaos test helpers."""

from __future__ import annotations

from contextlib import AsyncExitStack

from nats.aio.client import Client

from hive_broker.__main__ import start as start_broker
from hive_broker.service import Broker
from hivetest.hive import TestHive
from hivetest.services import broker_settings
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentPolicy


async def alice_writes_to_bob(
    stack: AsyncExitStack, hive: TestHive, **broker_overrides: object
) -> tuple[Broker, Client]:
    """A broker, alice and bob with real credentials and applied policies (both may write to bob); alice's
    connection."""
    broker = await start_broker(stack, broker_settings(hive, **broker_overrides))
    kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
    for name in ("alice", "bob"):
        hive.add_agent(name)
        await kv.put(name, bus.encode(AgentPolicy(agent=name, allowedRecipients=["bob"])))  # type: ignore[call-arg]
    return broker, await hive.connect("alice")
