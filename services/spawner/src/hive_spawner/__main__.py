"""`python -m hive_spawner`: run the spawner until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from hive_spawner import __version__
from hive_spawner.repos import ConfigRepos
from hive_spawner.service import Spawner
from hive_spawner.settings import SpawnerSettings
from hyperhive import bus, runtime
from hyperhive.wire import subjects


async def start(stack: AsyncExitStack, settings: SpawnerSettings, stop: asyncio.Event | None = None) -> Spawner:
    nc, js = await bus.join(stack, settings, name=subjects.SPAWNER)
    spawner = Spawner(nc, js, ConfigRepos(settings.state_dir / "config"), settings.state_dir / "agents", settings)
    stack.callback(spawner.backend.stop_all)  # agents stop with their spawner (they would die with it anyway)
    await stack.enter_async_context(
        bus.serve(
            nc,
            name=subjects.SPAWNER,
            version=__version__,
            description="Agents' config repos and containers",
            endpoints=spawner.endpoints(),
        )
    )
    await spawner.resume()
    runtime.background(stack, spawner.work(), "commands", stop)
    return spawner


def main() -> None:
    runtime.main(SpawnerSettings, start)


if __name__ == "__main__":
    main()
