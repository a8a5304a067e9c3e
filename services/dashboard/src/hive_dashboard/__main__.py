"""`python -m hive_dashboard`: run the dashboard until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
from contextlib import AsyncExitStack

from hive_dashboard import __version__
from hive_dashboard.hive import Hive
from hive_dashboard.password import Passwords, ensure_password, initial_password_file
from hive_dashboard.recorder import Recorder
from hive_dashboard.service import Dashboard, serve_http, url_file
from hive_dashboard.settings import DashboardSettings
from hive_dashboard.store import Store, connect
from hyperhive import bus, runtime
from hyperhive.files import write_atomic
from hyperhive.migrate import migrate
from hyperhive.wire import subjects

log = logging.getLogger("hive_dashboard")


async def start(stack: AsyncExitStack, settings: DashboardSettings, stop: asyncio.Event | None = None) -> Dashboard:
    pool = await connect(settings.database_url)
    stack.push_async_callback(pool.close)
    async with pool.acquire() as conn:
        await migrate(conn, subjects.DASHBOARD)
    if ensure_password(settings.state_dir):
        log.info("event=initial_password file=%s", initial_password_file(settings.state_dir))
    nc, js = await bus.join(stack, settings, name=subjects.DASHBOARD)
    dashboard = Dashboard(settings, Hive(nc, js), Store(pool), Passwords(settings.state_dir))
    recorder = Recorder(nc, js, pool, settings.dashboard_stats_days, dashboard.feeds.recorded)
    runtime.background(stack, recorder.run(), "recorder", stop)
    runtime.background(stack, recorder.retention(), "retention", stop)
    dashboard.url = await stack.enter_async_context(serve_http(dashboard))
    write_atomic(url_file(settings.state_dir), dashboard.url + "\n")
    log.info("service=dashboard url=%s", dashboard.url)
    # Last: `event=ready` (what `hivectl up` waits for) is said once the web server listens.
    await stack.enter_async_context(
        bus.serve(
            nc,
            name=subjects.DASHBOARD,
            version=__version__,
            description="The operator's web dashboard",
            endpoints=[],
        )
    )
    return dashboard


def main() -> None:
    runtime.main(DashboardSettings, start)


if __name__ == "__main__":
    main()
