"""`/ws/terminal/{name}`: a shell in an agent's container, in the operator's browser (xterm.js) over a WebSocket.

The harness opens the PTY (`hive.harness.<name>.pty.open`, recorded by it as `pty_opened` with the operator's
account) and relays it over NATS; this bridges it: output bytes to the socket in order, the socket's bytes to the
PTY's input, a JSON text frame `{"cols": …, "rows": …}` to a resize; the socket closing closes the shell, and the
shell ending closes the socket. The guard in front of the app has checked the session and the origin already.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

import nats.errors
from nats.aio.msg import Msg
from starlette.websockets import WebSocket, WebSocketDisconnect

from hive_dashboard.auth import client_of, session_of
from hive_dashboard.hive import Hive
from hive_dashboard.store import Store
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.errors import HiveError
from hyperhive.wire.models import PtyOpen, PtyResize, PtySession
from hyperhive.wire.names import check_agent_ref

log = logging.getLogger("hive_dashboard.terminal")

OPEN_TIMEOUT = 10.0
MAX_QUEUED = 4096  # output chunks a slow browser may fall behind by before its terminal is closed
ENDED = b""


def size(value: str | None, default: int, most: int) -> int:
    return max(1, min(most, int(value))) if value and value.isdigit() else default


async def terminal(websocket: WebSocket, hive: Hive, store: Store) -> None:
    try:
        name = check_agent_ref(websocket.path_params["name"])
    except HiveError as exc:
        await websocket.close(code=1008, reason=exc.message[:120])
        return
    session = session_of(websocket.scope)
    assert session is not None  # the guard closes a socket without one before it opens
    cols = size(websocket.query_params.get("cols"), 80, 500)
    rows = size(websocket.query_params.get("rows"), 24, 200)
    client = client_of(websocket)
    row = await store.audit(session.account, "terminal", name, "started", session=session.short, client=client)
    try:
        request = PtyOpen(cols=cols, rows=rows, opened_by=session.account)
        opened = await bus.call(hive.nc, subjects.harness(name, "pty.open"), request, PtySession, OPEN_TIMEOUT)
    except HiveError as exc:
        await store.settle(row, str(exc.code))
        await websocket.close(code=1011, reason=exc.message[:120])
        return
    await store.settle(row, "ok")
    await websocket.accept()
    await bridge(websocket, hive, name, opened.session)
    log.info("agent=%s session=%s account=%s event=terminal_closed", name, opened.session, session.account)


async def bridge(websocket: WebSocket, hive: Hive, name: str, pty: str) -> None:
    out: asyncio.Queue[bytes] = asyncio.Queue(MAX_QUEUED)

    async def output(msg: Msg) -> None:
        if msg.subject.endswith(".closed") or out.full():  # the shell ended, or the browser does not keep up
            with contextlib.suppress(asyncio.QueueEmpty):
                if out.full():
                    out.get_nowait()
            out.put_nowait(ENDED)
        elif msg.data:
            out.put_nowait(msg.data)

    subs = [
        await hive.nc.subscribe(subjects.agent(name, f"pty.{pty}.out"), cb=output),
        await hive.nc.subscribe(subjects.agent(name, f"pty.{pty}.closed"), cb=output),
    ]

    async def send() -> None:
        while (chunk := await out.get()) != ENDED:
            await websocket.send_bytes(chunk)

    sender = asyncio.create_task(send())
    try:
        while not sender.done():
            receiving = asyncio.ensure_future(websocket.receive())
            await asyncio.wait({receiving, sender}, return_when=asyncio.FIRST_COMPLETED)
            if not receiving.done():
                receiving.cancel()
                break
            message = receiving.result()
            if message["type"] == "websocket.disconnect":
                break
            if message.get("bytes") is not None:
                await hive.nc.publish(subjects.harness(name, f"pty.{pty}.in"), message["bytes"])
            elif message.get("text") is not None:
                await resize(hive, name, pty, message["text"])
    except WebSocketDisconnect:
        pass
    finally:
        sender.cancel()
        for sub in subs:
            with contextlib.suppress(nats.errors.Error):
                await sub.unsubscribe()
        with contextlib.suppress(nats.errors.Error):
            await hive.nc.publish(subjects.harness(name, f"pty.{pty}.close"), b"")
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the browser may have gone first
            await websocket.close()


async def resize(hive: Hive, name: str, pty: str, text: str) -> None:
    """A text frame is a resize; anything else in one is ignored (the terminal's input comes as bytes)."""
    try:
        wanted = json.loads(text)
        request = PtyResize(cols=size(str(wanted["cols"]), 80, 500), rows=size(str(wanted["rows"]), 24, 200))
    except (ValueError, KeyError, TypeError):
        return
    await hive.nc.publish(subjects.harness(name, f"pty.{pty}.resize"), bus.encode(request))
