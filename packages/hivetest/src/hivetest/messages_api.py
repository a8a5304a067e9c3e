"""A scripted Anthropic Messages API on loopback, so tests (and the demo) drive the real `claude` CLI offline.

Each request the CLI makes for a turn gets the next scripted reply; side requests (no tools: session titles and the
like) get a short text. Replies stream as server-sent events the way the real API does (`message_start`, a
`content_block_start`/`_delta`/`_stop` per block, `message_delta` with the stop reason and usage, `message_stop`).
Every request is kept, so a test can check what the CLI sent (model, tools, …).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


@dataclass
class Text:
    text: str


@dataclass
class ToolUse:
    name: str
    input: dict[str, Any]
    id: str = field(default_factory=lambda: f"toolu_{uuid.uuid4().hex[:24]}")


@dataclass
class ApiError:
    status: int
    type: str
    message: str


@dataclass
class Hold:
    """Start answering, then never finish (until the client goes away or `seconds` pass): a turn to cancel."""

    seconds: float = 120.0


Reply = list[Text | ToolUse] | ApiError | Hold
SUMMARY = "<summary>The conversation so far, summarised by the scripted API.</summary>"


def is_compaction(body: dict[str, Any]) -> bool:
    """The CLI's `/compact` asks for a summary with its tools listed but forbidden (seen with 2.1.x)."""
    messages = body.get("messages") or []
    last = messages[-1].get("content") if messages else ""
    text = last if isinstance(last, str) else " ".join(str(b.get("text", "")) for b in last if isinstance(b, dict))
    return "Do NOT call any tools" in text and "summary" in text.lower()


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


def _stream(model: str, blocks: Sequence[Text | ToolUse]) -> Iterator[bytes]:
    usage = {"input_tokens": 10, "output_tokens": 5}
    message: dict[str, Any] = {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage,
    }
    yield _sse("message_start", {"type": "message_start", "message": message})
    for index, block in enumerate(blocks):
        if isinstance(block, Text):
            yield _sse(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
            )
            yield _sse(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": block.text}},
            )
        else:
            yield _sse(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": index,
                    "content_block": {"type": "tool_use", "id": block.id, "name": block.name, "input": {}},
                },
            )
            yield _sse(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": json.dumps(block.input)},
                },
            )
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": index})
    stop = "tool_use" if any(isinstance(b, ToolUse) for b in blocks) else "end_turn"
    yield _sse(
        "message_delta",
        {"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": None}, "usage": {"output_tokens": 5}},
    )
    yield _sse("message_stop", {"type": "message_stop"})


class MessagesApi:
    """The scripted API: `script(...)` queues replies to turn requests, `script_side(...)` to tool-less requests
    (such as a notes rewrite); `/compact` requests are answered with a summary. `requests`, `side_requests` and
    `compactions` hold what the CLI sent; `credentials` how each request authenticated (`x-api-key: …` or
    `authorization: …`)."""

    def __init__(self) -> None:
        self.replies: deque[Reply] = deque()
        self.side_replies: deque[Reply] = deque()
        self.requests: list[dict[str, Any]] = []
        self.side_requests: list[dict[str, Any]] = []
        self.compactions: list[dict[str, Any]] = []
        self.credentials: list[str] = []
        self.holding = threading.Event()  # set once a `Hold` reply has begun
        self.responder: Callable[[dict[str, Any]], Reply] | None = None  # answers when nothing is scripted
        self.port = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *replies: Reply) -> None:
        with self._lock:
            self.replies.extend(replies)

    def script_side(self, *replies: Reply) -> None:
        with self._lock:
            self.side_replies.extend(replies)

    async def _messages(self, request: Request) -> Response:
        body = await request.json()
        model = str(body.get("model", "claude"))
        with self._lock:
            self.credentials += [
                f"{h}: {request.headers[h]}" for h in ("x-api-key", "authorization") if h in request.headers
            ]
            if is_compaction(body):
                self.compactions.append(body)
                reply: Reply = [Text(SUMMARY)]
            elif not body.get("tools"):  # a side request (a notes rewrite, a session title, …)
                self.side_requests.append(body)
                reply = self.side_replies.popleft() if self.side_replies else [Text("ok")]
            else:
                self.requests.append(body)
                if self.replies:
                    reply = self.replies.popleft()
                elif self.responder is not None:
                    reply = self.responder(body)
                else:
                    reply = [Text("(the script has nothing more to say)")]
        if isinstance(reply, ApiError):
            return JSONResponse(
                {"type": "error", "error": {"type": reply.type, "message": reply.message}}, status_code=reply.status
            )
        if isinstance(reply, Hold):
            self.holding.set()
            return StreamingResponse(_held(model, reply.seconds), media_type="text/event-stream")
        return StreamingResponse(_aiter(_stream(model, reply)), media_type="text/event-stream")

    def app(self) -> Starlette:
        async def head(request: Request) -> Response:
            return Response(status_code=404)

        return Starlette(
            routes=[Route("/", head, methods=["HEAD", "GET"]), Route("/v1/messages", self._messages, methods=["POST"])]
        )


async def _aiter(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def _held(model: str, seconds: float) -> AsyncIterator[bytes]:
    yield next(_stream(model, []))  # message_start: the turn is under way
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(asyncio.Event().wait(), seconds)  # until the CLI hangs up (the response is cancelled)


@contextmanager
def serve_messages_api() -> Iterator[MessagesApi]:
    """Run a scripted Messages API in a thread on a free loopback port, for as long as the block lasts.

    The socket is bound and listening before the server thread starts, so a client may connect at once: the kernel
    queues it until uvicorn accepts. No waiting for the server to come up."""
    api = MessagesApi()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    api.port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(api.app(), log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="messages-api", daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
