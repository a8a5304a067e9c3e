"""A clean hive on a test's NATS server: connections as any principal, agents added and revoked for real."""

from __future__ import annotations

import contextlib
from pathlib import Path
from types import TracebackType
from typing import Any

import nats.errors
from nats.aio.client import Client

from hivectl.natsserver import NatsServer
from hyperhive import bus, streams
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.names import OPERATOR


class TestHive:
    """Connect as services, the operator or agents; every connection is closed when the test ends."""

    __test__ = False  # not a test class, whatever its name says

    def __init__(self, server: NatsServer, tmp_path: Path) -> None:
        self.server = server
        self.tmp_path = tmp_path
        self.agent_seeds: dict[str, Path] = {}
        self._clients: list[Client] = []

    @property
    def url(self) -> str:
        return self.server.url

    async def __aenter__(self) -> TestHive:
        await streams.declare((await self.connect(subjects.SPAWNER)).jetstream())
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for nc in reversed(self._clients):
            with contextlib.suppress(nats.errors.Error):
                await nc.close()
        for name in list(self.agent_seeds):
            self.remove_agent(name)

    def settings(self, principal: str) -> HiveSettings:
        """Settings as a service (`broker`, …), `operator`, or an agent added with `add_agent`."""
        creds = self.agent_seeds.get(principal) or self.server.identities.seed_path(principal)
        return HiveSettings(nats_url=self.url, nats_creds=creds, state_dir=self.tmp_path / "state")

    def service_env(self, principal: str) -> dict[str, str]:
        """The environment a process of `principal` is started with: where NATS is and its credential."""
        settings = self.settings(principal)
        return {"HIVE_NATS_URL": settings.nats_url, "HIVE_NATS_CREDS": str(settings.nats_creds)}

    async def connect(self, principal: str, **options: Any) -> Client:
        agentish = principal == OPERATOR or principal in self.agent_seeds
        inbox = subjects.reply_prefix(principal) if agentish else None
        nc = await bus.connect(self.settings(principal), name=principal, inbox_prefix=inbox, **options)
        self._clients.append(nc)
        return nc

    async def connect_seed(self, seed: Path, name: str, **options: Any) -> Client:
        """Connect with a seed of its own (a tool's), with any NATS client's default reply inbox."""
        settings = HiveSettings(nats_url=self.url, nats_creds=seed, state_dir=self.tmp_path / "state")
        nc = await bus.connect(settings, name=name, **options)
        self._clients.append(nc)
        return nc

    def add_agent(self, name: str) -> Path:
        """Mint and authorize agent `name` (a real credential, a real reload); return its seed file."""
        seed = self.tmp_path / "agents" / name / "nats.nk"
        self.agent_seeds[name] = seed
        self.server.identities.add_agent(name, seed)
        self.server.reload()
        return seed

    def remove_agent(self, name: str) -> None:
        self.agent_seeds.pop(name, None)
        self.server.identities.remove_agent(name)
        self.server.reload()
