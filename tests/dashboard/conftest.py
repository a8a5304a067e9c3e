"""The dashboard as `hivectl up` runs it (its own NATS principal, a fresh database, a state dir of its own), on a
free port, over the real broker and approver; an operator's HTTP client that has logged in."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest

from hive_dashboard.__main__ import start
from hive_dashboard.password import initial_password_file
from hive_dashboard.service import Dashboard
from hive_dashboard.settings import DashboardSettings
from hivetest.hive import TestHive
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
    dashboard: Dashboard
    state: Path

    @property
    def url(self) -> str:
        return self.dashboard.url

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
