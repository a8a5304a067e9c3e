"""The hyperhive MCP server the `claude` CLI starts for an agent (stdio): its tools to message, ask, and — for the
manager — to request changes and run agents. Every failure reaches the model as a sentence it can act on
(`is_error`), never as a crash. Tool results are plain text.

Run as `python -m hive_harness.tools` with `HIVE_AGENT`, `HIVE_NATS_URL`, `HIVE_NATS_CREDS`, `HIVE_STATE_DIR`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from nats.aio.client import Client
from pydantic import BaseModel, Field

from hyperhive import bus
from hyperhive.inbox import Inbox
from hyperhive.settings import HiveSettings, load
from hyperhive.wire import subjects
from hyperhive.wire.errors import HiveError
from hyperhive.wire.models import (
    AgentRequest,
    AgentStatus,
    Approval,
    ApprovalRequest,
    AskReply,
    AskRequest,
    Message,
    SendReply,
    SendRequest,
)
from hyperhive.wire.names import MANAGER

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


class ToolSettings(HiveSettings):
    agent: str = Field(description="The agent this server speaks for (its credential must be that agent's).")


@dataclass
class Hive:
    """What the tools share for the life of the server: the agent's connection and inbox."""

    agent: str
    nc: Client
    inbox: Inbox
    handed: list[str]  # tokens of messages handed to the model, acked at the next recv or at the end


async def guarded(work: Awaitable[T]) -> T:
    try:
        return await work
    except HiveError as exc:
        raise ToolError(exc.message) from None


def describe(messages: list[Message], unread: int) -> str:
    if not messages:
        return "No new messages."
    lines = []
    for m in messages:
        note = " (delivered again: you may have seen it before a restart)" if m.redelivered else ""
        kind = " (broadcast)" if m.broadcast else ""
        lines.append(f"From {m.sender}{kind}{note}, message {m.id}:\n{m.body}")
    more = f"\n\n{unread} more unread." if unread else ""
    return "\n\n---\n\n".join(lines) + more


def build(settings: ToolSettings) -> MCPServer[Hive]:
    me = settings.agent

    @asynccontextmanager
    async def lifespan(server: MCPServer[Hive]) -> AsyncIterator[Hive]:
        nc = await bus.connect(settings, name=f"{me}-tools", inbox_prefix=subjects.reply_prefix(me))
        inbox = Inbox(nc, me, held_file=settings.state_dir / "inbox-held.json")
        hive = Hive(me, nc, inbox, [])
        try:
            yield hive
        finally:
            if hive.handed:
                await inbox.ack(hive.handed)
            await nc.drain()

    server: MCPServer[Hive] = MCPServer(
        name="hyperhive",
        instructions=f"You are {me}, an agent of a hyperhive hive. Use these tools to talk to the hive.",
        lifespan=lifespan,
    )

    def hive_of(ctx: Context) -> Hive:
        return cast(Hive, ctx.request_context.lifespan_context)

    async def call(hive: Hive, verb: str, payload: Any, reply: type[M], timeout: float = 15) -> M:
        return await guarded(bus.call(hive.nc, subjects.agent(hive.agent, verb), payload, reply, timeout))

    @server.tool(structured_output=False)
    async def send(ctx: Context, to: str, body: str) -> str:
        """Send a message to another agent, to "manager", to "operator", or to "*" (every other agent)."""
        hive = hive_of(ctx)
        try:
            request = SendRequest(to=to, body=body)
        except ValueError as exc:
            raise ToolError(str(exc).splitlines()[-1]) from None
        sent = await call(hive, "send", request, SendReply)
        return f"Sent (message {sent.id}) to {', '.join(sent.recipients)}."

    @server.tool(structured_output=False)
    async def recv(ctx: Context, wait_seconds: float = 0, max: int = 8) -> str:
        """Read your next messages, waiting up to wait_seconds (at most 180) when there are none."""
        hive = hive_of(ctx)
        if hive.handed:
            await guarded(hive.inbox.ack(hive.handed))
            hive.handed = []
        messages, unread = await guarded(hive.inbox.take(max_messages=max, wait=wait_seconds))
        hive.handed = [m.token for m in messages]
        return describe(messages, unread)

    @server.tool(structured_output=False)
    async def ask(
        ctx: Context, question: str, options: list[str] | None = None, multi: bool = False, ttl_seconds: int = 3600
    ) -> str:
        """Ask the operator a question; the answer arrives later as a message from "system"."""
        hive = hive_of(ctx)
        try:
            request = AskRequest(question=question, options=options or [], multi=multi, ttl_seconds=ttl_seconds)
        except ValueError as exc:
            raise ToolError(str(exc).splitlines()[-1]) from None
        asked = await call(hive, "ask", request, AskReply)
        return f"Question #{asked.id} is with the operator; the answer will come as a message from system."

    @server.tool(structured_output=False)
    async def whoami(ctx: Context) -> str:
        """Who you are in the hive."""
        role = "the manager of the hive" if me == MANAGER else "an agent of the hive"
        return f"You are {me}, {role}. Your notes are in /state/notes.md."

    if me == MANAGER:
        manager_tools(server, hive_of, call)
    return server


def manager_tools(server: MCPServer[Hive], hive_of: Callable[[Any], Hive], call: Callable[..., Awaitable[Any]]) -> None:
    """The manager's verbs: requests become approvals the operator decides; lifecycle acts at once."""

    async def request(ctx: Context, kind: str, **fields: Any) -> str:
        try:
            payload = ApprovalRequest(**fields)
        except ValueError as exc:
            raise ToolError(str(exc).splitlines()[-1]) from None
        approval: Approval = await call(hive_of(ctx), f"request.{kind}", payload, Approval, 40)
        return f"Request #{approval.id} ({kind} for {approval.agent}) is waiting for the operator."

    @server.tool(structured_output=False)
    async def request_spawn(ctx: Context, name: str, description: str = "") -> str:
        """Ask to create and start a new agent from the template."""
        return await request(ctx, "spawn", agent=name, description=description)

    @server.tool(structured_output=False)
    async def request_spawn_draft(ctx: Context, name: str, description: str = "") -> str:
        """Ask to create a new agent's repos and state dir (no container) so you can prepare its config at /agents."""
        return await request(ctx, "spawn_draft", agent=name, description=description)

    @server.tool(structured_output=False)
    async def request_spawn_commit(ctx: Context, name: str, commit_ref: str, description: str = "") -> str:
        """Ask to start a drafted agent from a commit of its proposed repo."""
        return await request(ctx, "spawn_commit", agent=name, commit_ref=commit_ref, description=description)

    @server.tool(structured_output=False)
    async def request_apply_commit(ctx: Context, agent: str, commit_ref: str, description: str = "") -> str:
        """Ask to apply a commit of an agent's proposed repo (its agent.nix) to the running agent."""
        return await request(ctx, "apply_commit", agent=agent, commit_ref=commit_ref, description=description)

    def lifecycle_tool(verb: str) -> Callable[..., Awaitable[str]]:
        async def lifecycle(ctx: Context, agent: str) -> str:
            status: AgentStatus = await call(
                hive_of(ctx), f"lifecycle.{verb}", AgentRequest(agent=agent), AgentStatus, 60
            )
            return f"{status.name} is {status.state}."

        return lifecycle

    for verb in ("start", "stop", "restart"):
        server.add_tool(
            lifecycle_tool(verb), name=verb, description=f"{verb.capitalize()} another agent.", structured_output=False
        )


def main() -> None:
    settings = load(ToolSettings)
    build(settings).run("stdio")


if __name__ == "__main__":
    main()
