"""The hyperhive MCP tools the `claude` CLI gets for an agent: to message, ask, and — for the manager — to request
changes and run agents. Every failure reaches the model as a sentence it can act on (`is_error`), never as a crash.
Tool results are plain text.

The harness serves them itself (`ToolServer`, with `mcp.McpServer`), over streamable HTTP on loopback, for the CLI
of every turn: a stdio server started by the CLI cost ~0.6 s of every turn, most of it importing the SDK. A random
bearer token, written only into the agent's 0600 `mcp.json`, keeps every other local process out (agents of the
local backend share the host's network). The same server answers the CLI's PreToolUse hook at `/hook` (see
`hook.py`), behind the same token.
"""

from __future__ import annotations

import hmac
import secrets
import socket
from collections import Counter
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from nats.aio.client import Client
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Receive, Scope, Send

from hive_harness.http import HttpServer
from hive_harness.mcp import McpServer, Tool, ToolError
from hyperhive import bus
from hyperhive.inbox import Handled, Inbox
from hyperhive.wire import subjects
from hyperhive.wire.errors import HiveError, first_problem
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
from hyperhive.wire.names import MANAGER, Party, party

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


@dataclass
class ToolContext:
    """What the tools share for the life of the server: the agent's connection and inbox."""

    agent: str
    nc: Client
    inbox: Inbox
    handed: list[str]  # tokens of messages handed to the model, acked at the next recv or at the end
    sent: Counter[Party] = field(default_factory=Counter)  # this turn's messages, per party (the turn's stats)
    received: Counter[Party] = field(default_factory=Counter)


def made(model: type[M], **fields: Any) -> M:
    """A request from a tool's arguments; a bad one is a ToolError the model reads (the validator's sentence)."""
    try:
        return model(**fields)
    except ValidationError as exc:
        raise ToolError("{}: {}".format(*first_problem(exc, "arguments"))) from None


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


def build(hive: ToolContext) -> McpServer:
    me = hive.agent

    async def call(verb: str, payload: Any, reply: type[M], timeout: float = 15) -> M:
        return await guarded(bus.call(hive.nc, subjects.agent(me, verb), payload, reply, timeout))

    async def send(to: str, body: str) -> str:
        """Send a message to another agent, to "manager", to "operator", or to "*" (every other agent)."""
        sent = await call("send", made(SendRequest, to=to, body=body), SendReply)
        hive.sent[party(to)] += 1
        return f"Sent (message {sent.id}) to {', '.join(sent.recipients)}."

    async def recv(wait_seconds: float = 0, max: int = 8) -> str:
        """Read your next messages, waiting up to wait_seconds (at most 180) when there are none."""
        if hive.handed:
            await guarded(hive.inbox.ack(hive.handed))
            hive.handed = []
        messages, unread = await guarded(hive.inbox.take(max_messages=max, wait=wait_seconds))
        hive.handed = [m.token for m in messages]
        hive.received.update(party(m.sender) for m in messages)
        return describe(messages, unread)

    async def ask(question: str, options: list[str] | None = None, multi: bool = False, ttl_seconds: int = 3600) -> str:
        """Ask the operator a question; the answer arrives later as a message from "system"."""
        request = made(AskRequest, question=question, options=options or [], multi=multi, ttl_seconds=ttl_seconds)
        asked = await call("ask", request, AskReply)
        return f"Question #{asked.id} is with the operator; the answer will come as a message from system."

    async def whoami() -> str:
        """Who you are in the hive."""
        role = "the manager of the hive" if me == MANAGER else "an agent of the hive"
        return f"You are {me}, {role}. Your notes are in /state/notes.md."

    tools = [Tool.of(send), Tool.of(recv), Tool.of(ask), Tool.of(whoami)]
    if me == MANAGER:
        tools += manager_tools(call)
    instructions = f"You are {me}, an agent of a hyperhive hive. Use these tools to talk to the hive."
    return McpServer("hyperhive", instructions, tools)


def manager_tools(call: Callable[..., Awaitable[Any]]) -> list[Tool]:
    """The manager's verbs: requests become approvals the operator decides; lifecycle acts at once."""

    async def request(kind: str, **fields: Any) -> str:
        payload = made(ApprovalRequest, **fields)
        approval: Approval = await call(f"request.{kind}", payload, Approval, 40)
        return f"Request #{approval.id} ({kind} for {approval.agent}) is waiting for the operator."

    async def request_spawn(name: str, description: str = "") -> str:
        """Ask to create and start a new agent from the template."""
        return await request("spawn", agent=name, description=description)

    async def request_spawn_draft(name: str, description: str = "") -> str:
        """Ask to create a new agent's repos and state dir (no container) so you can prepare its config at /agents."""
        return await request("spawn_draft", agent=name, description=description)

    async def request_spawn_commit(name: str, commit_ref: str, description: str = "") -> str:
        """Ask to start a drafted agent from a commit of its proposed repo."""
        return await request("spawn_commit", agent=name, commit_ref=commit_ref, description=description)

    async def request_apply_commit(agent: str, commit_ref: str, description: str = "") -> str:
        """Ask to apply a commit of an agent's proposed repo (its agent.nix) to the running agent."""
        return await request("apply_commit", agent=agent, commit_ref=commit_ref, description=description)

    def lifecycle_tool(verb: str) -> Tool:
        async def lifecycle(agent: str) -> str:
            status: AgentStatus = await call(f"lifecycle.{verb}", made(AgentRequest, agent=agent), AgentStatus, 60)
            return f"{status.name} is {status.state}."

        return Tool.of(lifecycle, name=verb, description=f"{verb.capitalize()} another agent.")

    requests: list[Callable[..., Awaitable[str]]] = [
        request_spawn,
        request_spawn_draft,
        request_spawn_commit,
        request_apply_commit,
    ]
    return [*(Tool.of(r) for r in requests), *(lifecycle_tool(verb) for verb in ("start", "stop", "restart"))]


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
        app = build(self.context)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)  # connections queue from here on, before the server accepts: no waiting for it to come up
        self.port = sock.getsockname()[1]
        server = HttpServer(bearer_only(with_hook(app, self.hook), self.token), sock)
        await server.start()
        stack.push_async_callback(server.stop)

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

    def traffic(self) -> tuple[Counter[Party], Counter[Party]]:
        """What the tools sent and received since the last time this was asked (a turn's share), and start anew."""
        taken = self.context.sent, self.context.received
        self.context.sent, self.context.received = Counter(), Counter()
        return taken

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
