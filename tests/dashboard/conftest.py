"""The dashboard as `hivectl up` runs it (its own NATS principal, a fresh database, a state dir of its own), on a
free port, over the real broker and approver; an operator's HTTP client that has logged in."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from playwright.async_api import Browser, Page, expect

from hive_approver.__main__ import start as start_approver
from hive_approver.service import Approver
from hive_dashboard.__main__ import start
from hive_dashboard.password import initial_password_file
from hive_dashboard.service import Dashboard
from hive_dashboard.settings import DashboardSettings
from hive_spawner.__main__ import start as start_spawner
from hive_spawner.service import Spawner
from hivetest.browser import chromium
from hivetest.hive import TestHive
from hivetest.services import approver_settings, spawner_settings
from hyperhive.wire import subjects


def dashboard_settings(hive: TestHive, database_url: str, state: Path, **overrides: Any) -> DashboardSettings:
    base = hive.settings(subjects.DASHBOARD)
    return DashboardSettings(
        nats_url=base.nats_url,
        nats_creds=base.nats_creds,
        state_dir=state,
        database_url=database_url,
        dashboard_port=0,
        **overrides,
    )


@dataclass
class Running:
    """A dashboard: started in this test's process, or (`dashboard` None) as a process of its own at `url`."""

    dashboard: Dashboard | None
    state: Path
    at: str = ""

    @property
    def url(self) -> str:
        return self.dashboard.url if self.dashboard is not None else self.at

    @property
    def password(self) -> str:
        return initial_password_file(self.state).read_text().strip()

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=20)

    async def logged_in(self, password: str | None = None) -> httpx.AsyncClient:
        client = self.client()
        reply = await client.post("/login", data={"password": password or self.password, "next": "/"})
        assert reply.status_code == 303, reply.text
        client.headers["X-CSRF-Token"] = (await client.get("/api/me")).json()["csrf"]
        return client


@pytest.fixture
async def dashboard(hive: TestHive, database_url: str, broker: object, tmp_path: Path) -> AsyncIterator[Running]:
    state = tmp_path / "hive-state"
    async with AsyncExitStack() as stack:
        yield Running(await start(stack, dashboard_settings(hive, database_url, state)), state)


@pytest.fixture
async def operator(dashboard: Running) -> AsyncIterator[httpx.AsyncClient]:
    client = await dashboard.logged_in()
    yield client
    await client.aclose()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's chromium, headless, driven by Playwright (never a downloaded browser)."""
    async with chromium() as launched:
        yield launched


async def log_in(browser: Browser, dashboard: Running, **context: Any) -> Page:
    """A new browser context (its own cookies) on the home page, logged in through the form."""
    page = await (await browser.new_context(**context)).new_page()
    await page.goto(dashboard.url + "/")
    await expect(page).to_have_url(re.compile(r"/login\?next=/$"))
    await page.fill("#password", dashboard.password)
    await page.click("button[type=submit]")
    await expect(page.locator("#conn")).to_have_text("live")
    return page


@pytest.fixture
async def page(browser: Browser, dashboard: Running) -> Page:
    return await log_in(browser, dashboard)


class Restartable:
    """A dashboard that a test stops and starts again on the same port and state (a cut the browser must ride)."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.stack: AsyncExitStack | None = None

    async def start(self) -> Running:
        self.stack = AsyncExitStack()
        dashboard = await start(self.stack, self.settings)
        port = int(dashboard.url.rsplit(":", 1)[1])
        self.settings = self.settings.model_copy(update={"dashboard_port": port})
        return Running(dashboard, self.settings.state_dir)

    async def stop(self) -> None:
        if self.stack is not None:
            stack, self.stack = self.stack, None
            await stack.aclose()


@pytest.fixture
async def restartable(hive: TestHive, database_url: str, broker: object, tmp_path: Path) -> AsyncIterator[Restartable]:
    running = Restartable(dashboard_settings(hive, database_url, tmp_path / "hive-state"))
    yield running
    await running.stop()


@dataclass
class RealHive:
    """The real spawner (agents in sandboxes, running a stand-in that says "ready"), the approver and the dashboard."""

    spawner: Spawner
    approver: Approver
    dashboard: Running


@pytest.fixture
async def real_hive(
    hive: TestHive, database_url: str, broker: object, spawner_state: Path, tmp_path: Path
) -> AsyncIterator[RealHive]:
    async with AsyncExitStack() as stack:
        spawner = await start_spawner(stack, spawner_settings(hive, spawner_state))
        approver = await start_approver(stack, approver_settings(hive, database_url))
        state = tmp_path / "hive-state"
        dashboard = Running(await start(stack, dashboard_settings(hive, database_url, state)), state)
        yield RealHive(spawner, approver, dashboard)
