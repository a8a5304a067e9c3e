"""The harness's own HTTP server at its edges: whatever the agent's Bash sends its port costs one connection, never the
server, and the CLI's requests (kept-alive, chunked, waiting for 100-continue) are answered whole."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from starlette.types import Receive, Scope, Send

from hive_harness.http import MAX_BODY, HttpServer


async def echo(scope: Scope, receive: Receive, send: Send) -> None:
    """Answers with the method, path, query and body it was given; `/fail` raises, `/mute` says nothing."""
    if scope["path"] == "/fail":
        raise RuntimeError("a bug")
    if scope["path"] == "/mute":
        return
    message = await receive()
    said = b"%s %s ?%s %s" % (scope["method"].encode(), scope["raw_path"], scope["query_string"], message["body"])
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"1")]  # a wrong length the server replaces
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": said, "more_body": True})
    await send({"type": "http.response.body", "body": b"!"})


@pytest.fixture
async def port() -> AsyncIterator[int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    server = HttpServer(echo, sock, idle=2)
    await server.start()
    yield sock.getsockname()[1]
    await server.stop()


async def exchange(port: int, *requests: bytes) -> list[bytes]:
    """Send each request on one connection and read its answer (up to the body's length); [] once it is closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    answers = []
    try:
        for request in requests:
            writer.write(request)
            await writer.drain()
            answers.append(await response(reader))
    finally:
        writer.close()
    return answers


async def response(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")
    )
    return head.split(b"\r\n", 1)[0] + b" | " + await reader.readexactly(length)


def post(path: str, body: bytes, *extra: bytes) -> bytes:
    head = [f"POST {path} HTTP/1.1".encode(), b"Host: x", b"Content-Length: %d" % len(body), *extra]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


async def test_requests_on_one_kept_alive_connection_are_each_answered_whole(port: int) -> None:
    answers = await exchange(port, post("/mcp?x=1", b'{"a": 1}'), post("/hook", "ünï".encode()))
    assert answers == [b'HTTP/1.1 200  | POST /mcp ?x=1 {"a": 1}!', "HTTP/1.1 200  | POST /hook ? ünï!".encode()]


async def test_a_chunked_body_and_a_client_waiting_for_100_continue_are_served(port: int) -> None:
    chunked = b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
    assert (await reader.readuntil(b"\r\n\r\n")).startswith(b"HTTP/1.1 100")
    writer.write(b"hi" + chunked)
    assert [await response(reader), await response(reader)] == [
        b"HTTP/1.1 200  | POST /e ? hi!",
        b"HTTP/1.1 200  | POST /c ? abcde!",
    ]
    writer.close()


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\x01\x02 not http\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999999\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 200_000 + b"\r\n\r\n",
    ],
)
async def test_what_is_not_http_we_take_gets_a_4xx_and_the_server_serves_on(port: int, garbage: bytes) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(garbage)
    status = (await reader.readuntil(b"\r\n")).split()[1]
    writer.close()
    assert status.startswith(b"4"), status
    assert await exchange(port, post("/ok", b"")) == [b"HTTP/1.1 200  | POST /ok ? !"]


async def test_a_body_over_the_limit_is_refused_unread(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (MAX_BODY + 1))
    assert (await response(reader)).startswith(b"HTTP/1.1 413")
    assert await reader.read() == b""  # and closed: the body is never read
    writer.close()


async def test_a_failing_or_silent_app_is_a_500_and_a_client_gone_midway_costs_nothing(port: int) -> None:
    assert await exchange(port, post("/fail", b""), post("/mute", b"")) == [
        b"HTTP/1.1 500  | The harness failed to answer; its log says why.",
        b"HTTP/1.1 500  | The harness gave no answer.",
    ]
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(post("/half", b"0123456789")[:-5])  # half a body, then gone
    writer.close()
    assert await exchange(port, post("/after", b"x")) == [b"HTTP/1.1 200  | POST /after ? x!"]


async def test_an_idle_connection_is_closed(port: int) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /slow HTTP/1.1\r\nHost: x\r\n")  # a request that never ends
    assert await asyncio.wait_for(reader.read(), 30) == b""  # closed by the server after its idle time (2 s here)
    writer.close()
