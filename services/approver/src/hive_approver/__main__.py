"""`python -m hive_approver`: run the approver until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from hive_approver import __version__
from hive_approver.service import Approver
from hive_approver.settings import ApproverSettings
from hive_approver.store import Store, connect
from hyperhive import bus, policies, runtime
from hyperhive.migrate import migrate
from hyperhive.wire import subjects


async def start(stack: AsyncExitStack, settings: ApproverSettings, stop: asyncio.Event | None = None) -> Approver:
    pool = await connect(settings.database_url)
    stack.push_async_callback(pool.close)
    async with pool.acquire() as conn:
        await migrate(conn, subjects.APPROVER)
    nc, js = await bus.join(stack, settings, name=subjects.APPROVER)
    agents = await policies.follow(stack, nc, stop)
    approver = Approver(nc, js, Store(pool), agents, settings.spawner_host)
    await approver.follow_decisions()
    runtime.background(stack, approver.outbox.run(), "outbox", stop)  # first: what a killed approver left unpublished
    runtime.background(stack, approver.deadlines(), "deadlines", stop)
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
    await approver.sample_queue()  # the stats' approval queue starts from what is waiting now
    return approver


def main() -> None:
    runtime.main(ApproverSettings, start)


if __name__ == "__main__":
    main()
