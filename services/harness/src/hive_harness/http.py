"""The harness's loopback HTTP/1.1 server, for the CLI's MCP requests and its PreToolUse hook: ASGI apps that answer
with one body each, served with h11 (the protocol: no parser of ours) over asyncio's sockets.

uvicorn served them before. Its import, with click and multiprocessing, held ~2.7 MiB in each of a hundred harnesses,
for a server whose one client is the CLI beside it. Whatever reaches the port is the agent's to write (its Bash can
connect to it), so a request that is not HTTP, too large, or never finished costs one connection, never the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from typing import Any

import h11
from starlette.types import ASGIApp, Message

from hyperhive import runtime

log = logging.getLogger("hive_harness.http")

MAX_BODY = 8 * 1024 * 1024
"""A request body larger than this is refused (413) unread: the CLI's largest are a tool's output in the hook."""
MAX_HEAD = 64 * 1024
"""The request line and headers together."""
IDLE_SECONDS = 60.0
"""A kept-alive connection with no request for this long is closed (the CLI opens another)."""


class HttpServer:
    """`app` on a listening socket until `stop`."""

    def __init__(self, app: ASGIApp, sock: socket.socket, *, idle: float = IDLE_SECONDS) -> None:
        self.app = app
        self.sock = sock
        self.idle = idle
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._connection, sock=self.sock)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        await runtime.cancelled(*self._connections)
        if self._server is not None:
            await self._server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        try:
            while await self._exchange(conn, reader, writer):
                conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:  # not HTTP, or not HTTP we take: say so if we still may, and close
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with contextlib.suppress(h11.LocalProtocolError, ConnectionError):
                    writer.write(_response(conn, exc.error_status_hint, b"Bad request: " + str(exc).encode()[:200]))
                    await writer.drain()
        except (ConnectionError, TimeoutError):
            pass  # the client went, or kept a connection idle too long
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    async def _exchange(self, conn: h11.Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """One request and its response; whether the connection may carry another."""
        request = await _next(conn, reader, self.idle)
        if not isinstance(request, h11.Request):
            return False  # closed by the client between requests
        length = dict(request.headers).get(b"content-length")
        if length is not None and int(length) > MAX_BODY:
            writer.write(_response(conn, 413, b"The request body is too large."))
            await writer.drain()
            return False
        if conn.they_are_waiting_for_100_continue:
            writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
        body = bytearray()
        while not isinstance(event := await _next(conn, reader, self.idle), h11.EndOfMessage):
            if not isinstance(event, h11.Data):
                return False  # the client closed mid-body
            body += event.data
            if len(body) > MAX_BODY:
                writer.write(_response(conn, 413, b"The request body is too large."))
                await writer.drain()
                return False
        status, headers, payload = await self._call(request, bytes(body))
        writer.write(_response(conn, status, payload, headers))
        await writer.drain()
        return conn.our_state is h11.DONE and conn.their_state is h11.DONE

    async def _call(self, request: h11.Request, body: bytes) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        """The app's answer to one request: its status, headers and whole body (500 when it fails or says nothing)."""
        path, _, query = request.target.partition(b"?")
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": request.http_version.decode(),
            "method": request.method.decode(),
            "scheme": "http",
            "path": path.decode("latin-1"),
            "raw_path": path,
            "query_string": query,
            "root_path": "",
            "headers": list(request.headers),
        }
        received = False
        answer: dict[str, Any] = {"body": bytearray()}

        async def receive() -> Message:
            nonlocal received
            if received:  # the request was whole: asking again is asking whether the client went
                return {"type": "http.disconnect"}
            received = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer["status"], answer["headers"] = message["status"], list(message.get("headers") or [])
            elif message["type"] == "http.response.body":
                answer["body"] += message.get("body", b"")

        try:
            await self.app(scope, receive, send)
        except Exception:  # a bug of an app is its client's 500, never the server's end
            log.exception("path=%s outcome=app_failed", scope["path"][:100])
            return 500, [], b"The harness failed to answer; its log says why."
        if "status" not in answer:
            return 500, [], b"The harness gave no answer."
        return answer["status"], answer["headers"], bytes(answer["body"])


async def _next(conn: h11.Connection, reader: asyncio.StreamReader, idle: float) -> Any:
    """The connection's next h11 event, reading as needed; `h11.ConnectionClosed` when the client closed."""
    while (event := conn.next_event()) is h11.NEED_DATA:
        conn.receive_data(await asyncio.wait_for(reader.read(65536), idle))
    return event


def _response(
    conn: h11.Connection, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> bytes:
    """A whole response, its length ours (whatever the app said of it)."""
    kept = [(k, v) for k, v in headers or [] if k.lower() not in (b"content-length", b"transfer-encoding")]
    head = h11.Response(status_code=status, headers=[*kept, (b"content-length", str(len(body)).encode())])
    return b"".join(conn.send(event) or b"" for event in (head, h11.Data(data=body), h11.EndOfMessage()))
