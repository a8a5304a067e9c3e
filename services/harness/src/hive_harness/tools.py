"""The hyperhive MCP tools the `claude` CLI gets for an agent: to message, ask, and — for the manager — to request
changes and run agents. Every failure reaches the model as a sentence it can act on (`is_error`), never as a crash.
Tool results are plain text.

The harness serves them itself (`ToolServer`), over streamable HTTP on loopback, for the CLI of every turn: a stdio
server started by the CLI cost ~0.6 s of every turn, most of it importing the SDK. A random bearer token, written
only into the agent's 0600 `mcp.json`, keeps every other local process out (agents of the local backend share the
host's network). The same server answers the CLI's PreToolUse hook at `/hook` (see `hook.py`), behind the same token.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, cast

import uvicorn
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from nats.aio.client import Client
from pydantic import BaseModel
from starlette.types import ASGIApp, Receive, Scope, Send

from hyperhive import bus
from hyperhive.inbox import Handled, Inbox
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


@dataclass
class ToolContext:
    """What the tools share for the life of the server (the MCP lifespan context): the agent's connection and inbox."""

    agent: str
    nc: Client
    inbox: Inbox
    handed: list[str]  # tokens of messages handed to the model, acked at the next recv or at the end


def made(model: type[M], **fields: Any) -> M:
    """A request from a tool's arguments; a bad one is a ToolError the model reads (the validator's sentence)."""
    try:
        return model(**fields)
    except ValueError as exc:
        raise ToolError(str(exc).splitlines()[-1]) from None


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


def build(hive: ToolContext) -> MCPServer[ToolContext]:
    me = hive.agent

    @asynccontextmanager
    async def lifespan(server: MCPServer[ToolContext]) -> AsyncIterator[ToolContext]:
        yield hive  # one for the harness's life; the SDK enters this for every session

    server: MCPServer[ToolContext] = MCPServer(
        name="hyperhive",
        instructions=f"You are {me}, an agent of a hyperhive hive. Use these tools to talk to the hive.",
        lifespan=lifespan,
    )

    def context_of(ctx: Context) -> ToolContext:
        return cast(ToolContext, ctx.request_context.lifespan_context)

    async def call(hive: ToolContext, verb: str, payload: Any, reply: type[M], timeout: float = 15) -> M:
        return await guarded(bus.call(hive.nc, subjects.agent(hive.agent, verb), payload, reply, timeout))

    @server.tool(structured_output=False)
    async def send(ctx: Context, to: str, body: str) -> str:
        """Send a message to another agent, to "manager", to "operator", or to "*" (every other agent)."""
        hive = context_of(ctx)
        sent = await call(hive, "send", made(SendRequest, to=to, body=body), SendReply)
        return f"Sent (message {sent.id}) to {', '.join(sent.recipients)}."

    @server.tool(structured_output=False)
    async def recv(ctx: Context, wait_seconds: float = 0, max: int = 8) -> str:
        """Read your next messages, waiting up to wait_seconds (at most 180) when there are none."""
        hive = context_of(ctx)
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
        hive = context_of(ctx)
        request = made(AskRequest, question=question, options=options or [], multi=multi, ttl_seconds=ttl_seconds)
        asked = await call(hive, "ask", request, AskReply)
        return f"Question #{asked.id} is with the operator; the answer will come as a message from system."

    @server.tool(structured_output=False)
    async def whoami(ctx: Context) -> str:
        """Who you are in the hive."""
        role = "the manager of the hive" if me == MANAGER else "an agent of the hive"
        return f"You are {me}, {role}. Your notes are in /state/notes.md."

    if me == MANAGER:
        manager_tools(server, context_of, call)
    return server


def manager_tools(
    server: MCPServer[ToolContext], context_of: Callable[[Any], ToolContext], call: Callable[..., Awaitable[Any]]
) -> None:
    """The manager's verbs: requests become approvals the operator decides; lifecycle acts at once."""

    async def request(ctx: Context, kind: str, **fields: Any) -> str:
        payload = made(ApprovalRequest, **fields)
        approval: Approval = await call(context_of(ctx), f"request.{kind}", payload, Approval, 40)
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
                context_of(ctx), f"lifecycle.{verb}", made(AgentRequest, agent=agent), AgentStatus, 60
            )
            return f"{status.name} is {status.state}."

        return lifecycle

    for verb in ("start", "stop", "restart"):
        server.add_tool(
            lifecycle_tool(verb), name=verb, description=f"{verb.capitalize()} another agent.", structured_output=False
        )


class ToolServer:
    """The tools of one agent, served by its harness on a loopback port for as long as the harness runs."""

    def __init__(
        self, nc: Client, agent: str, state_dir: Path, hook: ASGIApp | None = None, handled: Handled | None = None
    ) -> None:
        inbox = Inbox(nc, agent, held_file=state_dir / "inbox-held.json", handled=handled)
        self.context = ToolContext(agent, nc, inbox, [])
        self.hook = hook
        self.token = secrets.token_urlsafe(32)
        self.port = 0

    async def start(self, stack: AsyncExitStack) -> None:
        await self.context.inbox.open()
        app = build(self.context).streamable_http_app(stateless_http=True, json_response=True)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # connections queue from here on, before uvicorn accepts: no waiting for it to come up
        self.port = sock.getsockname()[1]
        routed = bearer_only(with_hook(app, self.hook), self.token)
        server = uvicorn.Server(uvicorn.Config(routed, log_level="warning"))
        task = asyncio.create_task(server.serve(sockets=[sock]), name=f"{self.context.agent}-tools")

        async def stop() -> None:
            server.should_exit = True
            await task
            sock.close()

        stack.push_async_callback(stop)

    @property
    def hook_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def entry(self) -> dict[str, Any]:
        """This server in the CLI's --mcp-config."""
        return {
            "type": "http",
            "url": f"http://127.0.0.1:{self.port}/mcp",
            "headers": {"Authorization": f"Bearer {self.token}"},
        }

    async def turn_ended(self) -> None:
        """What `recv` handed to the model during the turn has reached it: acknowledge it."""
        if self.context.handed:
            handed, self.context.handed = self.context.handed, []
            await self.context.inbox.ack(handed)


def with_hook(app: ASGIApp, hook: ASGIApp | None) -> ASGIApp:
    """`/hook` to the PreToolUse hook (404 without one: the CLI then blocks the call), the rest to the MCP app."""

    async def routed(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("path") == "/hook":
            if hook is None:
                await send({"type": "http.response.start", "status": 404, "headers": []})
                await send({"type": "http.response.body", "body": b"no hook here"})
                return
            await hook(scope, receive, send)
        else:
            await app(scope, receive, send)

    return routed


def bearer_only(app: ASGIApp, token: str) -> ASGIApp:
    """Refuse any HTTP request without the token (ASGI middleware; the lifespan passes through)."""
    expected = f"Bearer {token}".encode()

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            given = dict(scope.get("headers") or []).get(b"authorization", b"")
            if not hmac.compare_digest(given, expected):
                await send(
                    {"type": "http.response.start", "status": 401, "headers": [(b"content-type", b"text/plain")]}
                )
                await send({"type": "http.response.body", "body": b"hyperhive tools: the bearer token is wrong"})
                return
        await app(scope, receive, send)

    return guarded
