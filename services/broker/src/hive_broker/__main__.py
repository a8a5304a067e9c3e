"""`python -m hive_broker`: run the broker until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from datetime import timedelta

from hive_broker import __version__, system
from hive_broker.inbox import Inboxes
from hive_broker.service import Broker
from hive_broker.settings import BrokerSettings
from hyperhive import bus, policies, runtime
from hyperhive.wire import subjects


async def start(stack: AsyncExitStack, settings: BrokerSettings, stop: asyncio.Event | None = None) -> Broker:
    nc, js = await bus.join(stack, settings, name=subjects.BROKER)
    policy = await policies.follow(stack, nc, stop)
    tools = await policies.follow_tools(stack, nc, stop)
    broker = Broker(nc, Inboxes(nc, js, ack_wait=settings.ack_wait_seconds), policy, tools)
    runtime.background(stack, system.relay(nc, js, broker.system_message), "system-messages", stop)
    runtime.background(stack, _janitor(broker, settings), "janitor", stop)
    runtime.background(stack, broker.sample_depths(settings.depth_sample_seconds), "depth-samples", stop)
    await stack.enter_async_context(
        bus.serve(
            nc,
            name=subjects.BROKER,
            version=__version__,
            description="Durable agent messaging with recipient policy",
            endpoints=broker.endpoints(),
        )
    )
    return broker


async def _janitor(broker: Broker, settings: BrokerSettings) -> None:
    retention = timedelta(days=settings.retention_days)
    while True:
        await asyncio.sleep(settings.janitor_interval_seconds)  # a timer, not a wait for a condition
        await broker.inboxes.sweep(retention)


def main() -> None:
    runtime.main(BrokerSettings, start)


if __name__ == "__main__":
    main()
