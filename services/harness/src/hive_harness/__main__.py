"""`python -m hive_harness`: one agent's harness, inside its container, until SIGINT/SIGTERM.

It connects with the agent's own credential (`HIVE_NATS_CREDS`), serves its harness plane and terminal, beats, and
runs turns for as long as messages come. A failed turn never ends the process: the state says what is wrong."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from hive_harness.service import Harness
from hive_harness.settings import HarnessSettings
from hive_harness.terminal import Terminals
from hyperhive import bus, runtime
from hyperhive.wire import subjects

LOOP = asyncio.new_event_loop
"""The harness runs on asyncio's own event loop, not the host services' uvloop: it handles a few messages a turn,
and uvloop would be 2.4 MiB of every agent's RSS (0.8 MiB of it private), once per agent (decision 0007). Its
tests run on this loop too (tests/harness/conftest.py)."""


async def start(stack: AsyncExitStack, settings: HarnessSettings, stop: asyncio.Event | None = None) -> Harness:
    agent = settings.agent
    nc = await stack.enter_async_context(
        bus.connected(settings, name=f"{agent}-harness", inbox_prefix=subjects.reply_prefix(agent))
    )
    harness = Harness(nc, settings)
    await harness.open(stack)
    await harness.serve(stack)
    await Terminals(nc, agent, cwd=settings.state_dir, turns=harness).serve(stack)
    runtime.background(stack, harness.run_forever(), f"{agent}-turns", stop)
    return harness


def main() -> None:
    runtime.main(HarnessSettings, start, LOOP)


if __name__ == "__main__":
    main()
