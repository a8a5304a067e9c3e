"""The services as fixtures, on the test's hive: a real broker, a real approver with a spawner stand-in, and agents
as their harnesses call them. Loaded with the hivetest plugin, so every test folder has them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack

import asyncpg
import pytest

from hive_approver.__main__ import start as start_approver
from hive_approver.service import Approver
from hive_broker.__main__ import start as start_broker
from hive_broker.service import Broker
from hivetest.agents import Agents, Caller, make_agent
from hivetest.hive import TestHive
from hivetest.services import TestSpawner, approver_settings, broker_settings
from hyperhive import bus, runtime
from hyperhive.wire import subjects
from hyperhive.wire.models import FreezeRequest


@pytest.fixture
async def broker(hive: TestHive) -> AsyncIterator[Broker]:
    async with AsyncExitStack() as stack:
        yield await start_broker(stack, broker_settings(hive))


@pytest.fixture
async def agents(hive: TestHive, broker: Broker) -> Agents:
    return Agents(hive, broker)


@pytest.fixture
async def spawner(hive: TestHive) -> AsyncIterator[TestSpawner]:
    nc = await hive.connect(subjects.SPAWNER)
    stand_in = TestSpawner(nc)
    endpoints = [bus.operator_verb(subjects.SPAWNER, "freeze", FreezeRequest, stand_in.freeze, concurrent=False)]
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(
            bus.serve(nc, name="spawner", version="0.0.1", description="test", endpoints=endpoints)
        )
        runtime.background(stack, stand_in.work(), "test-spawner")
        yield stand_in


@pytest.fixture
async def approver(hive: TestHive, database_url: str, spawner: TestSpawner) -> AsyncIterator[Approver]:
    async with AsyncExitStack() as stack:
        yield await start_approver(stack, approver_settings(hive, database_url))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


@pytest.fixture
async def manager(hive: TestHive, approver: Approver) -> Caller:
    return await make_agent(hive, approver, "manager")


@pytest.fixture
async def alice(hive: TestHive, approver: Approver) -> Caller:
    return await make_agent(hive, approver, "alice")
