"""The spawner service keeps answering while a command works: git, files and the backend run in threads."""

import asyncio
import threading
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from nats.aio.client import Client

from hive_spawner.__main__ import start as start_spawner
from hive_spawner.local import LocalBackend
from hivetest.hive import TestHive
from hivetest.services import spawner_settings
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentsReply, Empty, SpawnerCommand


async def test_a_slow_create_does_not_hold_up_the_agents_listing(
    hive: TestHive, operator_nc: Client, spawner_state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container's create can take minutes (nixos-container builds it); it ran on the event loop, so `agents` and
    every other request waited behind it. Here the sandbox's start waits until `agents` has answered, for at most
    10 s — which it did only after those 10 s, once the start gave up waiting and the loop was free again."""
    creating, answered, started = threading.Event(), threading.Event(), threading.Event()
    start = LocalBackend.start

    def slow_start(self: LocalBackend, name: str, command: Sequence[str], env: Mapping[str, str]) -> None:
        creating.set()
        answered.wait(10)
        start(self, name, command, env)
        started.set()

    monkeypatch.setattr(LocalBackend, "start", slow_start)
    async with AsyncExitStack() as stack:
        spawner = await start_spawner(stack, spawner_settings(hive, spawner_state))
        spawning = asyncio.ensure_future(spawner.apply(SpawnerCommand(approval_id=1, action="spawn", agent="bob")))
        assert await asyncio.to_thread(creating.wait, 30)
        listed = await bus.call(operator_nc, subjects.operator(subjects.SPAWNER, "agents"), Empty(), AgentsReply, 30)
        while_creating = not started.is_set()
        answered.set()
        await spawning
    assert while_creating
    assert [(a.name, a.state) for a in listed.agents] == [("bob", "stopped")]  # applied, its sandbox not up yet
