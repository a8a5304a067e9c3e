"""The agent's terminal: on an operator's request the harness opens a shell in a PTY inside the container and relays
it over NATS for the dashboard's xterm.js.

- `hive.harness.<agent>.pty.open` (request, `PtyOpen`) → `PtySession` with a session id;
- output: raw bytes on `hive.agent.<agent>.pty.<session>.out`, in order (one publisher, one connection);
- input: raw bytes to `hive.harness.<agent>.pty.<session>.in`; `PtyResize` to `….resize`; anything to `….close`;
- `hive.agent.<agent>.pty.<session>.closed` when the shell ends; `pty_opened` (stored before the shell starts:
  no record, no terminal) and `pty_closed` events for the audit trail;
- the session recorded as asciicast v2 in the agent's state dir (`cast.py`): no recording, no terminal either.

Input is written whole and in order however fast it comes: what the PTY does not take at once (a large paste fills
its buffer) waits for it to be writable again. A terminal opens watching: its input is ignored until the operator
takes control (`….control`, `PtyControl`), which holds the agent's turn loop (`TurnHold`) until it is given back, the
terminal closes, or its controller stops saying it is there (`….alive`).

Only host services may publish on an agent's harness plane, and only the dashboard (a service) can read the
output: an operator reaches the terminal through the dashboard's login.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import secrets
import signal
import struct
import termios
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg

from hive_harness.cast import Cast, CastError
from hyperhive import bus, events, runtime
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import PTY_ALIVE_SECONDS, PtyControl, PtyOpen, PtyResize, PtySession

log = logging.getLogger("hive_harness.terminal")

MAX_SESSIONS = 4
MAX_PENDING_INPUT = 4 * 1024 * 1024
"""Input waiting for the PTY past which more is refused (a shell that reads nothing, and a flood of keys)."""
SHELL = ("/bin/bash", "-l")


class TurnHold(Protocol):
    """What a terminal in control holds: the harness's turn loop (`Harness.hold` and `Harness.release`)."""

    async def hold(self, holder: str) -> None: ...

    async def release(self, holder: str) -> None: ...


@dataclass
class Session:
    id: str
    master: int
    proc: asyncio.subprocess.Process
    opened_by: str
    cast: Cast
    pump: asyncio.Task[None] | None = None
    pending: bytearray = field(default_factory=bytearray)  # input the PTY has not taken yet
    writing: bool = False  # waiting for the PTY to take more
    control: bool = False  # its input goes to the shell (else it only watches)
    taking: asyncio.Task[None] | None = None
    heard: float = 0.0  # when its controller last said anything (monotonic)
    watchdog: asyncio.Task[None] | None = None  # gives control back when its controller goes silent


class Terminals:
    def __init__(
        self,
        nc: Client,
        agent: str,
        cwd: Path,
        *,
        shell: tuple[str, ...] = SHELL,
        turns: TurnHold | None = None,
        alive_seconds: float = PTY_ALIVE_SECONDS,
    ) -> None:
        self.alive_seconds = alive_seconds
        self.nc = nc
        self.agent = agent
        self.cwd = cwd
        self.shell = shell
        self.turns = turns  # None: no turn loop to hold (a terminal served on its own)
        self.sessions: dict[str, Session] = {}

    async def serve(self, stack: AsyncExitStack) -> None:
        opening = bus.Endpoint("pty.open", subjects.harness(self.agent, "pty.open"), PtyOpen, self._open_request)
        await stack.enter_async_context(bus.respond(self.nc, [opening]))
        sub = await self.nc.subscribe(subjects.harness(self.agent, "pty.*.*"), cb=self._control)
        stack.push_async_callback(self.close_all)
        stack.push_async_callback(sub.unsubscribe)

    async def _open_request(self, subject: str, request: PtyOpen) -> PtySession:
        return await self.open(request)

    async def open(self, request: PtyOpen) -> PtySession:
        if len(self.sessions) >= MAX_SESSIONS:
            raise HiveError(ErrorCode.CONFLICT, f"{self.agent} has {MAX_SESSIONS} terminals open; close one first.")
        session_id = secrets.token_hex(8)
        opened = PtySession(agent=self.agent, session=session_id, opened_by=request.opened_by)
        # Stored before the shell starts: no terminal runs without its audit record (the store away: none opens).
        await events.publish(self.nc, "pty_opened", opened, about=self.agent, by_agent=True)
        try:
            title = f"{self.agent}, opened by {request.opened_by}"
            cast = Cast.open(self.cwd, session_id, cols=request.cols, rows=request.rows, title=title)
        except CastError as exc:
            await self._closed(opened)
            raise HiveError(ErrorCode.UNAVAILABLE, f"{exc}; no terminal is opened without its recording.") from None
        master, slave = os.openpty()
        _resize(master, request.cols, request.rows)
        env = {"TERM": "xterm-256color", "HOME": str(self.cwd), "PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.shell,
                cwd=self.cwd,
                env=env,
                stdin=slave,
                stdout=slave,
                stderr=slave,
                pass_fds=(slave,),
                preexec_fn=lambda: _own_terminal(slave),
            )
        except OSError as exc:
            os.close(master)
            cast.close()
            await self._closed(opened)
            raise HiveError(
                ErrorCode.UNAVAILABLE, f"No shell could be started ({exc.strerror}: {self.shell[0]})."
            ) from None
        finally:
            os.close(slave)
        session = Session(session_id, master, proc, request.opened_by, cast)
        self.sessions[session.id] = session
        os.set_blocking(master, False)
        session.pump = asyncio.create_task(self._pump(session), name=f"pty-{session.id}")
        log.info("agent=%s pty=%s opened_by=%s", self.agent, session.id, request.opened_by)
        return opened

    async def _pump(self, session: Session) -> None:
        """Relay the terminal's output, in order, until the shell and everything on its terminal are gone."""
        loop = asyncio.get_running_loop()
        readable = asyncio.Event()
        loop.add_reader(session.master, readable.set)
        try:
            while True:
                await readable.wait()
                readable.clear()
                try:
                    data = os.read(session.master, 65536)
                except BlockingIOError:
                    continue
                except OSError:  # EIO: the other side of the terminal is closed
                    break
                if not data:
                    break
                session.cast.output(data)
                await self.nc.publish(self._out(session.id, "out"), data)
        finally:
            loop.remove_reader(session.master)
        await self.close(session.id)

    async def _control(self, msg: Msg) -> None:
        _, session_id, verb = subjects.verb_of(msg.subject, subjects.HARNESS_PREFIX).split(".", 2)
        session = self.sessions.get(session_id)
        if session is None:
            return
        session.heard = time.monotonic()
        if verb == "control":
            if session.taking is None or session.taking.done():  # one at a time; it may wait for a turn to end
                session.taking = asyncio.create_task(self._take(session, msg), name=f"pty-control-{session.id}")
        elif verb == "in":
            if not session.control:
                return  # watching
            if len(session.pending) + len(msg.data) > MAX_PENDING_INPUT:
                log.warning("agent=%s pty=%s outcome=input_refused bytes=%d", self.agent, session.id, len(msg.data))
                return
            session.cast.input(msg.data)
            session.pending += msg.data
            self._write(session)
        elif verb == "resize":
            try:
                size = bus.parse(PtyResize, msg.data)
            except HiveError:
                return
            _resize(session.master, size.cols, size.rows)
            session.cast.resize(size.cols, size.rows)
        elif verb == "close":
            await self.close(session_id)

    async def _take(self, session: Session, msg: Msg) -> None:
        """Take control (once the running turn has ended) or give it back; answer with what holds now."""
        try:
            wanted = bus.parse(PtyControl, msg.data).control
        except HiveError:
            return
        if wanted and not session.control:
            if self.turns is not None:
                try:
                    await self.turns.hold(session.id)
                except HiveError as exc:
                    log.info("agent=%s pty=%s control=refused reason=%r", self.agent, session.id, exc.message)
                    return
            if self.sessions.get(session.id) is not session:  # it closed meanwhile
                if self.turns is not None:
                    await self.turns.release(session.id)
                return
            session.control = True
            session.watchdog = asyncio.create_task(self._watch(session), name=f"pty-alive-{session.id}")
        elif not wanted and session.control:
            await self._give_back(session)
        log.info("agent=%s pty=%s control=%s", self.agent, session.id, session.control)
        if msg.reply:
            with contextlib.suppress(nats.errors.Error):
                await msg.respond(bus.encode(PtyControl(control=session.control)))

    async def _watch(self, session: Session) -> None:
        """While `session` has control: give it back once its controller has said nothing for three beats."""
        session.heard = time.monotonic()
        while session.control:
            await asyncio.sleep(self.alive_seconds)
            if time.monotonic() - session.heard > 3 * self.alive_seconds:
                log.warning(
                    "agent=%s pty=%s outcome=control_given_back reason=controller_silent", self.agent, session.id
                )
                await self._give_back(session)

    async def _give_back(self, session: Session) -> None:
        session.control = False
        if session.watchdog is not None and session.watchdog is not asyncio.current_task():
            session.watchdog.cancel()
        if self.turns is not None:
            await self.turns.release(session.id)

    def _write(self, session: Session) -> None:
        """Give the PTY what it takes of the waiting input now; the rest when it is writable again."""
        while session.pending:
            try:
                written = os.write(session.master, session.pending)
            except BlockingIOError:
                break
            except OSError:  # EIO: the shell's side is gone; the pump closes the session
                session.pending.clear()
                break
            del session.pending[:written]
        loop = asyncio.get_running_loop()
        if session.pending and not session.writing:
            loop.add_writer(session.master, self._write, session)
        elif not session.pending and session.writing:
            loop.remove_writer(session.master)
        session.writing = bool(session.pending)

    async def close(self, session_id: str) -> None:
        session = self.sessions.pop(session_id, None)
        if session is None:
            return
        if session.writing:
            asyncio.get_running_loop().remove_writer(session.master)
        session.cast.close()
        await runtime.cancelled(
            *(t for t in (session.taking, session.watchdog) if t is not None and t is not asyncio.current_task())
        )
        if self.turns is not None:
            await self.turns.release(session.id)  # whether it had control or was still waiting for it
        if session.pump is not None and session.pump is not asyncio.current_task():
            await runtime.cancelled(session.pump)
        os.close(session.master)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(session.proc.pid, signal.SIGHUP)
        await session.proc.wait()
        await self.nc.publish(self._out(session_id, "closed"), b"")
        await self._closed(PtySession(agent=self.agent, session=session_id, opened_by=session.opened_by))
        log.info("agent=%s pty=%s closed", self.agent, session_id)

    async def close_all(self) -> None:
        for session_id in list(self.sessions):
            await self.close(session_id)

    def _out(self, session_id: str, what: str) -> str:
        return subjects.agent(self.agent, f"{subjects.PTY}.{session_id}.{what}")

    async def _closed(self, session: PtySession) -> None:
        """The session's end, for the audit trail: the shell is gone whether or not the store takes it now."""
        try:
            await events.publish(self.nc, "pty_closed", session, about=self.agent, by_agent=True)
        except HiveError as exc:
            log.error("agent=%s pty=%s outcome=close_unrecorded error=%s", self.agent, session.session, exc)


def _own_terminal(slave: int) -> None:
    """In the child: a session of its own whose controlling terminal is the PTY (what login_tty does, without its
    dup2s: the event loop sets up the child's stdio itself, and uvloop does that after this runs)."""
    os.setsid()
    fcntl.ioctl(slave, termios.TIOCSCTTY, 0)


def _resize(fd: int, cols: int, rows: int) -> None:
    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
