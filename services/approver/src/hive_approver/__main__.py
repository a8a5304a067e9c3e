"""`python -m hive_approver`: run the approver until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from hive_approver import __version__
from hive_approver.service import Approver
from hive_approver.settings import ApproverSettings
from hive_approver.store import Store, connect
from hyperhive import bus
from hyperhive.migrate import migrate, migrations_of
from hyperhive.policies import PolicyBook
from hyperhive.settings import load
from hyperhive.wire import subjects


async def start(stack: AsyncExitStack, settings: ApproverSettings, stop: asyncio.Event | None = None) -> Approver:
    pool = await connect(settings.database_url)
    stack.push_async_callback(pool.close)
    folder = migrations_of(subjects.APPROVER)
    assert folder is not None
    async with pool.acquire() as conn:
        await migrate(conn, subjects.APPROVER, folder)
    nc = await stack.enter_async_context(bus.connected(settings, name=subjects.APPROVER))
    js = nc.jetstream()
    await bus.declare(js)
    agents = PolicyBook()
    bus.background(stack, agents.follow(await js.key_value(subjects.POLICY_BUCKET)), "policy", stop)
    await asyncio.wait_for(agents.loaded.wait(), 30)
    approver = Approver(nc, js, Store(pool), agents, settings.spawner_host)
    await approver.follow_decisions()
    bus.background(stack, approver.deadlines(), "deadlines", stop)
    await stack.enter_async_context(
        bus.serve(
            nc,
            name=subjects.APPROVER,
            version=__version__,
            description="Approvals, operator questions and the audit log",
            endpoints=approver.endpoints(),
        )
    )
    # Only now: the spawner answers a command with an outcome, which needs the endpoints above.
    await approver.resume_commands()
    return approver


def main() -> None:
    settings = load(ApproverSettings)
    bus.setup_logging(settings.log_level)

    async def run(stack: AsyncExitStack, stop: asyncio.Event) -> None:
        await start(stack, settings, stop)

    bus.run(run)


if __name__ == "__main__":
    main()
