"""The server side of MCP as the claude CLI speaks it to an agent's tools: JSON-RPC over streamable HTTP, stateless,
answered with JSON (no SSE stream, no session): `initialize`, `ping`, `tools/list`, `tools/call`; notifications are
accepted and need no answer.

Written here rather than taken from the SDK: importing the SDK cost every harness 245 ms at its start and ~30 MiB
for as long as it ran, idle or not (docs/PERFORMANCE.md, "A hundred agents"), for these four methods. Each tool's
arguments are checked by a pydantic model made from its signature, so a wrong argument is a sentence the model can
act on, and every failure of a tool comes back as an `isError` result, never as a crash of the server.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError, create_model
from starlette.types import Receive, Scope, Send

from hyperhive.wire.errors import first_problem

log = logging.getLogger("hive_harness.mcp")

PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05")  # newest first
MAX_REQUEST_BYTES = 4 << 20
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602


class ToolError(Exception):
    """A tool's failure, said to the model in a sentence it can act on."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    handler: Callable[..., Awaitable[str]]
    arguments: type[BaseModel]

    @classmethod
    def of(cls, handler: Callable[..., Awaitable[str]], name: str = "", description: str = "") -> Tool:
        """A tool from an async function: its parameters (with their annotations and defaults) are its arguments."""
        fields: dict[str, Any] = {
            p.name: (p.annotation, ... if p.default is inspect.Parameter.empty else p.default)
            for p in inspect.signature(handler, eval_str=True).parameters.values()
        }
        name = name or handler.__name__
        model = create_model(f"{name}_arguments", **fields)
        return cls(name, description or inspect.getdoc(handler) or "", handler, model)

    def listed(self) -> dict[str, Any]:
        schema = self.arguments.model_json_schema()
        schema.pop("title", None)
        return {"name": self.name, "description": self.description, "inputSchema": schema}


def _text(text: str, *, error: bool = False) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": text}], "isError": error}


class McpServer:
    """One agent's tools as an ASGI app."""

    def __init__(self, name: str, instructions: str, tools: list[Tool], version: str = "1") -> None:
        self.name = name
        self.instructions = instructions
        self.tools = {t.name: t for t in tools}
        self.version = version

    async def answer(self, message: Any) -> dict[str, Any] | None:
        """The JSON-RPC response to `message`, or None for a notification."""
        if (
            not isinstance(message, dict)
            or message.get("jsonrpc") != "2.0"
            or not isinstance(message.get("method"), str)
        ):
            return _error(None, INVALID_REQUEST, "Not a JSON-RPC 2.0 request.")
        if "id" not in message:
            return None  # notifications/initialized, notifications/cancelled, …: nothing to answer
        params = message.get("params") or {}
        if not isinstance(params, dict):
            return _error(message["id"], INVALID_PARAMS, "params must be an object.")
        method = message["method"]
        if method == "initialize":
            asked = params.get("protocolVersion")
            result: dict[str, Any] = {
                "protocolVersion": asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0],
                "capabilities": {"tools": {"listChanged": False}},
                "serverInfo": {"name": self.name, "version": self.version},
                "instructions": self.instructions,
            }
        elif method == "ping":
            result = {}
        elif method == "tools/list":
            result = {"tools": [t.listed() for t in self.tools.values()]}
        elif method == "tools/call":
            result = await self.call(params.get("name"), params.get("arguments") or {})
        else:
            return _error(message["id"], METHOD_NOT_FOUND, f"Method {method!r} is not served here.")
        return {"jsonrpc": "2.0", "id": message["id"], "result": result}

    async def call(self, name: Any, arguments: Any) -> dict[str, Any]:
        tool = self.tools.get(name) if isinstance(name, str) else None
        if tool is None:
            return _text(f"There is no tool {name!r}; the tools are {', '.join(self.tools)}.", error=True)
        try:
            given = tool.arguments.model_validate(arguments)
        except ValidationError as exc:
            where, what = first_problem(exc, "arguments")
            return _text(f"Argument {where!r}: {what}.", error=True)
        try:
            return _text(await tool.handler(**dict(given)))
        except ToolError as exc:
            return _text(str(exc), error=True)
        except Exception:  # a tool's bug is the model's error result, never the server's end
            log.exception("tool=%s outcome=failed", name)
            return _text(f"The {name} tool failed inside the harness; its log says why.", error=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["method"] != "POST":  # stateless: no SSE stream to GET, no session to DELETE
            await _respond(send, 405, b"", [(b"allow", b"POST")])
            return
        body = b""
        while True:
            event = await receive()
            body += event.get("body", b"")
            if len(body) > MAX_REQUEST_BYTES:
                await _respond(send, 413, b"")
                return
            if not event.get("more_body"):
                break
        try:
            message = json.loads(body)
        except ValueError:
            reply: dict[str, Any] | None = _error(None, PARSE_ERROR, "The request is not JSON.")
        else:
            reply = await self.answer(message)
        if reply is None:
            await _respond(send, 202, b"")
        else:
            await _respond(send, 200, json.dumps(reply).encode(), [(b"content-type", b"application/json")])


def _error(id: Any, code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers or []})
    await send({"type": "http.response.body", "body": body})
