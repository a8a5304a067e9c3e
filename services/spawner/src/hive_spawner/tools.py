"""The tools the operator admits (`hivectl tool add`): a script or service that publishes into the hive as a NATS
user of its own, alone in an account of its own, allowed only its granted verbs on `hive.tool.<name>.>`. The tool
made its own key; only the public half comes here. Its grant goes to KV `hive-tools`, where the broker reads whom
it may send to. A tool's name is never an agent's, nor an agent's a tool's."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from nats.js import JetStreamContext

from hyperhive import bus
from hyperhive.identity import Identities, Reloads
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import ToolGrant

log = logging.getLogger("hive_spawner.tools")


class Tools:
    def __init__(
        self, js: JetStreamContext, reloads: Reloads | None, agents: Callable[[], list[str]], auth: asyncio.Lock
    ) -> None:
        self._js = js
        self._reloads = reloads
        self._identities = reloads.identities if reloads is not None else None
        self._agents = agents
        self._auth = auth  # auth.conf is rendered whole, for agents and tools alike: one change at a time

    def names(self) -> set[str]:
        return {grant.name for grant in self.list()}

    def list(self) -> list[ToolGrant]:
        return self._identities.tools() if self._identities is not None else []

    def _registry(self) -> Identities:
        if self._identities is None:
            raise HiveError(
                ErrorCode.UNAVAILABLE,
                "This spawner keeps no NATS identities (HIVE_NATS_AUTH_DIR), so it admits no tool.",
            )
        return self._identities

    async def _reload(self) -> None:
        assert self._reloads is not None  # _registry() said there is one
        await self._reloads.after_change()

    async def add(self, grant: ToolGrant) -> ToolGrant:
        """Admit `grant.name` (or change its grant or key): the grant is in KV before the tool can connect."""
        identities = self._registry()
        if grant.name in await asyncio.to_thread(self._agents):
            raise HiveError(
                ErrorCode.CONFLICT, f"There is an agent named {grant.name!r}; a tool needs a name of its own."
            )
        kv = await self._js.key_value(subjects.TOOLS_BUCKET)
        await kv.put(grant.name, bus.encode(grant))
        async with self._auth:
            await asyncio.to_thread(identities.add_tool, grant)
        await self._reload()
        log.info(
            "tool=%s send=%s broadcast=%s ask=%s outcome=admitted", grant.name, grant.send, grant.broadcast, grant.ask
        )
        return grant

    async def revoke(self, name: str) -> ToolGrant:
        """Cut `name` off: its user is gone from the server (its connections closed) before its grant is."""
        identities = self._registry()
        grant = next((g for g in self.list() if g.name == name), None)
        if grant is None:
            raise HiveError(ErrorCode.NOT_FOUND, f"There is no tool {name!r}.")
        async with self._auth:
            await asyncio.to_thread(identities.remove_tool, name)
        await self._reload()
        await (await self._js.key_value(subjects.TOOLS_BUCKET)).delete(name)
        log.info("tool=%s outcome=revoked", name)
        return grant
