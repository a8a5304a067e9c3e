"""The spawner's wiring: its operator-plane endpoints (freeze a commit for the approver, list agents, their logs and
applied config, hand out a new credential, admit and revoke tools, the lifecycle verbs), the manager's lifecycle
verbs and every harness's turn slot, over its agents (`lifecycle`) and its approved work (`commands`). git, file
work and the backend run in threads, so no request waits behind a `create`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from hive_spawner.commands import Commands
from hive_spawner.lifecycle import MANAGER_VERBS, OPERATOR_VERBS
from hive_spawner.repos import git
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    AgentConfigReply,
    AgentRequest,
    AgentsReply,
    AgentStatus,
    Empty,
    FreezeReply,
    FreezeRequest,
    LifecycleRefused,
    LogsReply,
    LogsRequest,
    SlotReply,
    SlotRequest,
    ToolGrant,
    ToolRequest,
    ToolsReply,
)
from hyperhive.wire.names import MANAGER

log = logging.getLogger("hive_spawner")


class Spawner(Commands):
    async def freeze(self, subject: str, req: FreezeRequest) -> FreezeReply:
        # git runs in a thread: the event loop keeps serving while it works.
        frozen = await asyncio.to_thread(self.repos.freeze, req.agent, req.commit_ref, req.approval_id)
        log.info("agent=%s approval=%d sha=%s outcome=frozen", req.agent, req.approval_id, frozen.sha[:12])
        return FreezeReply(sha=frozen.sha, tag=frozen.tag, diff=frozen.diff)

    # ── operator plane ──

    async def agents(self, subject: str, req: Empty) -> AgentsReply:
        return AgentsReply(agents=await asyncio.to_thread(lambda: self._statuses(self._names())))

    async def logs(self, subject: str, req: LogsRequest) -> LogsReply:
        lines = await asyncio.to_thread(self.backend.journal, self._known(req.agent), req.lines)
        return LogsReply(agent=req.agent, lines=lines)

    async def agent_config(self, subject: str, req: AgentRequest) -> AgentConfigReply:
        return await asyncio.to_thread(self._applied_config, self._known(req.agent))

    def _applied_config(self, agent: str) -> AgentConfigReply:
        sha = self.repos.applied_head(agent)
        if sha is None:
            raise HiveError(ErrorCode.NOT_FOUND, f"Agent {agent!r} has no applied config yet.")
        return AgentConfigReply(
            agent=agent, sha=sha, agent_nix=git(self.repos.applied(agent), "show", f"{sha}:agent.nix")
        )

    async def credential(self, subject: str, req: Empty) -> AgentsReply:
        return AgentsReply(agents=await self.hand_over_credential())

    async def tool_add(self, subject: str, req: ToolGrant) -> ToolGrant:
        return await self.tools.add(req)

    async def tool_revoke(self, subject: str, req: ToolRequest) -> ToolGrant:
        return await self.tools.revoke(req.name)

    async def tool_list(self, subject: str, req: Empty) -> ToolsReply:
        return ToolsReply(tools=await asyncio.to_thread(self.tools.list))

    def operator_verb(self, verb: str) -> Callable[[str, AgentRequest], Awaitable[AgentStatus]]:
        async def handle(subject: str, req: AgentRequest) -> AgentStatus:
            return await self.act(req.agent, verb)

        return handle

    async def slot(self, subject: str, req: SlotRequest) -> SlotReply:
        """`hive.agent.<name>.slot`: a harness takes one of the host's turn slots before its CLI runs, and gives it
        back after."""
        agent = subjects.caller(subject)
        if req.release:
            await self.slots.give_back(agent)
            granted = False
        else:
            granted = await self.slots.take(agent, req.wait_seconds)
        return SlotReply(granted=granted, held=len(self.slots.holders), limit=self.slots.limit)

    async def manager_verb(self, subject: str, req: AgentRequest) -> AgentStatus:
        """`hive.agent.<name>.lifecycle.<verb>`: only the manager, never on itself, only start/stop/restart."""
        caller, verb = subjects.caller(subject), subjects.verb_of(subject).removeprefix("lifecycle.")
        if caller != MANAGER:
            await self._event("lifecycle_refused", caller, LifecycleRefused(caller=caller, agent=req.agent, verb=verb))
            raise HiveError(ErrorCode.NOT_MANAGER, f"Only the manager may {verb} agents; ask the manager.")
        if verb not in MANAGER_VERBS:
            raise HiveError(ErrorCode.INVALID_REQUEST, f"The manager may {', '.join(MANAGER_VERBS)}; not {verb!r}.")
        if req.agent == MANAGER:
            raise HiveError(ErrorCode.NOT_ALLOWED, "The manager cannot stop or restart itself; ask the operator.")
        return await self.act(req.agent, verb)

    def endpoints(self) -> list[bus.Endpoint[Any]]:
        def verb(name: str, request: type[Any], handler: Callable[[str, Any], Awaitable[Any]]) -> bus.Endpoint[Any]:
            return bus.operator_verb(subjects.SPAWNER, name, request, handler, concurrent=False)

        return [
            verb("freeze", FreezeRequest, self.freeze),
            verb("agents", Empty, self.agents),
            verb("logs", LogsRequest, self.logs),
            verb("agent-config", AgentRequest, self.agent_config),
            verb("credential", Empty, self.credential),
            verb("tool-add", ToolGrant, self.tool_add),
            verb("tool-revoke", ToolRequest, self.tool_revoke),
            verb("tools", Empty, self.tool_list),
            *(verb(name, AgentRequest, self.operator_verb(name)) for name in OPERATOR_VERBS),
            bus.agent_verb("lifecycle.*", AgentRequest, self.manager_verb, concurrent=False),
            bus.agent_verb("slot", SlotRequest, self.slot),
        ]
