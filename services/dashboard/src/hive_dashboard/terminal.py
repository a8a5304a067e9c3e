"""`/ws/terminal/{name}`: a shell in an agent's container, in the operator's browser (xterm.js) over a WebSocket.

The harness opens the PTY (`hive.harness.<name>.pty.open`, recorded by it as `pty_opened` with the operator's
account) and relays it over NATS; this bridges it: output bytes to the socket in order, the socket's bytes to the
PTY's input, a JSON text frame `{"cols": …, "rows": …}` to a resize; the socket closing closes the shell, and the
shell ending closes the socket. The guard in front of the app has checked the session and the origin already.

A terminal opens watching: the harness ignores its input until `{"control": true}` (a text frame) has taken control,
which waits for the agent's running turn to end and holds its turn loop until `{"control": false}` or the close; the
answer comes back as a text frame `{"control": …}`. Opening, taking control, giving it back and closing are all in
the dashboard's audit log with the operator's account.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import nats.errors
from nats.aio.msg import Msg
from starlette.types import Message
from starlette.websockets import WebSocket, WebSocketDisconnect

from hive_dashboard.api import Audited
from hive_dashboard.auth import session_of
from hive_dashboard.hive import Hive
from hive_dashboard.store import Store
from hyperhive import bus, runtime
from hyperhive.wire import subjects
from hyperhive.wire.errors import HiveError
from hyperhive.wire.models import PTY_ALIVE_SECONDS, PtyControl, PtyOpen, PtyResize, PtySession
from hyperhive.wire.names import check_agent_ref

log = logging.getLogger("hive_dashboard.terminal")

OPEN_TIMEOUT = 10.0
CONTROL_TIMEOUT = 600.0  # how long taking control may wait for the running turn to end
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
    act = Audited(store)
    request = PtyOpen(cols=cols, rows=rows, opened_by=session.account)
    try:
        work = bus.call(hive.nc, subjects.harness(name, "pty.open"), request, PtySession, OPEN_TIMEOUT)
        opened = await act(websocket, "terminal", name, work)
    except HiveError as exc:  # the harness refused (a fifth terminal, no recording) or is away
        await websocket.close(code=1011, reason=exc.message[:120])
        return
    await websocket.accept()
    try:
        await Bridge(websocket, hive, name, opened.session, act).run()
    finally:
        await act(websocket, "terminal-close", name, _done(), pty=opened.session)
    log.info("agent=%s session=%s account=%s event=terminal_closed", name, opened.session, session.account)


async def _done() -> None:
    """Closing is recorded, not asked: the shell is gone either way."""


class Bridge:
    """One socket and one PTY session: output in order to the socket (and the answers to control as text frames),
    the socket's frames to the PTY."""

    def __init__(self, websocket: WebSocket, hive: Hive, name: str, pty: str, act: Audited) -> None:
        self.websocket = websocket
        self.hive = hive
        self.name = name
        self.pty = pty
        self.act = act
        self.out: asyncio.Queue[bytes | str] = asyncio.Queue(MAX_QUEUED)
        self.asking: asyncio.Task[None] | None = None

    def harness(self, verb: str) -> str:
        return subjects.harness(self.name, f"pty.{self.pty}.{verb}")

    async def output(self, msg: Msg) -> None:
        if msg.subject.endswith(".closed") or self.out.full():  # the shell ended, or the browser does not keep up
            with contextlib.suppress(asyncio.QueueEmpty):
                if self.out.full():
                    self.out.get_nowait()
            self.out.put_nowait(ENDED)
        elif msg.data:
            self.out.put_nowait(msg.data)

    async def send(self) -> None:
        while (chunk := await self.out.get()) != ENDED:
            if isinstance(chunk, str):
                await self.websocket.send_text(chunk)
            else:
                await self.websocket.send_bytes(chunk)

    async def alive(self) -> None:
        """Say the socket is still open, so a control it holds is kept (the harness gives it back otherwise)."""
        while True:
            await asyncio.sleep(PTY_ALIVE_SECONDS)
            with contextlib.suppress(nats.errors.Error):
                await self.hive.nc.publish(self.harness("alive"), b"")

    async def control(self, wanted: bool) -> None:
        """Take control or give it back (audited); the harness's answer goes to the page."""
        work = bus.call(self.hive.nc, self.harness("control"), PtyControl(control=wanted), PtyControl, CONTROL_TIMEOUT)
        try:
            held = await self.act(self.websocket, "terminal-control" if wanted else "terminal-release", self.name, work)
            said: dict[str, object] = {"control": held.control}
        except HiveError as exc:
            said = {"control": False, "error": exc.message}
        with contextlib.suppress(asyncio.QueueFull):
            self.out.put_nowait(json.dumps(said))

    async def frame(self, message: Message) -> None:
        if message.get("bytes") is not None:
            await self.hive.nc.publish(self.harness("in"), message["bytes"])
        elif (frame := frame_of(message.get("text"))) is None:
            return
        elif "control" not in frame:
            await resize(self.hive, self.name, self.pty, frame)
        elif self.asking is None or self.asking.done():  # one at a time: it may wait for a turn to end
            self.asking = asyncio.create_task(self.control(frame["control"] is True))

    async def run(self) -> None:
        subs = [
            await self.hive.nc.subscribe(subjects.agent(self.name, f"pty.{self.pty}.out"), cb=self.output),
            await self.hive.nc.subscribe(subjects.agent(self.name, f"pty.{self.pty}.closed"), cb=self.output),
        ]
        sender = asyncio.create_task(self.send())
        beating = asyncio.create_task(self.alive())
        try:
            while not sender.done():
                receiving = asyncio.ensure_future(self.websocket.receive())
                await asyncio.wait({receiving, sender}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    receiving.cancel()
                    break
                message = receiving.result()
                if message["type"] == "websocket.disconnect":
                    break
                await self.frame(message)
        except WebSocketDisconnect:
            pass
        finally:
            await runtime.cancelled(*(t for t in (sender, beating, self.asking) if t is not None))
            for sub in subs:
                with contextlib.suppress(nats.errors.Error):
                    await sub.unsubscribe()
            with contextlib.suppress(nats.errors.Error):
                await self.hive.nc.publish(self.harness("close"), b"")
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the browser may have gone first
                await self.websocket.close()


def frame_of(text: str | None) -> dict[str, Any] | None:
    """A text frame: a JSON object (a resize, or taking and giving back control); anything else is ignored (the
    terminal's input comes as bytes)."""
    if text is None or len(text) > 1000:
        return None
    try:
        frame = json.loads(text)
    except ValueError:
        return None
    return frame if isinstance(frame, dict) else None


async def resize(hive: Hive, name: str, pty: str, wanted: dict[str, Any]) -> None:
    try:
        request = PtyResize(cols=size(str(wanted["cols"]), 80, 500), rows=size(str(wanted["rows"]), 24, 200))
    except (ValueError, KeyError, TypeError):
        return
    await hive.nc.publish(subjects.harness(name, f"pty.{pty}.resize"), bus.encode(request))
