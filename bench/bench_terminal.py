"""Terminal benchmark: a keystroke typed into an agent's terminal → its echo back, through the dashboard's WebSocket
and the harness's PTY relay (bash's readline echoing it), next to the same keystroke sent straight to the harness
over NATS (no dashboard), and a raw NATS request/reply round trip, in the same run.

Starts its own nats-server, PostgreSQL and a dashboard process (as `hivectl up` would); the agent's terminals are
served by the harness's own `Terminals` in this process, with alice's credential. Prints JSON.
    uv run python bench/bench_terminal.py [--n 500] [--out FILE]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import httpx2 as httpx
from benchhive import BenchFailed, arguments, bench_hive, run, summary
from nats.aio.client import Client
from nats.aio.msg import Msg
from websockets.asyncio.client import connect

from hive_harness.terminal import Terminals
from hivectl.postgres import Postgres
from hivectl.up import prepare_database
from hyperhive import bus, streams
from hyperhive.process import free_port
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.models import PtyControl, PtyOpen, PtySession

KEYS = b"abcdefghijklmnopqrstuvwxyz"


async def main(n: int) -> dict[str, object]:
    with bench_hive() as hive:
        pg = Postgres(hive.root / "pg", port=free_port()).start()
        try:
            server, root = hive.server, hive.root
            database_url = await prepare_database(pg.url(), ["dashboard"])
            server.identities.add_agent("alice", root / "alice.nk")
            server.reload()
            host = await bus.connect(
                HiveSettings(nats_url=server.url, nats_creds=server.identities.seed_path("spawner")), name="bench"
            )
            await streams.declare(host.jetstream())
            alice = await bus.connect(
                HiveSettings(nats_url=server.url, nats_creds=root / "alice.nk"),
                name="alice",
                inbox_prefix="_INBOX.alice",
            )
            home = root / "alice-state"
            home.mkdir()
            async with asyncio.timeout(600):
                async with AsyncExitStack() as stack:
                    await Terminals(alice, "alice", cwd=home).serve(stack)
                    port = free_port()
                    state = root / "state"
                    hive.service(
                        "dashboard",
                        HIVE_DATABASE_URL=database_url,
                        HIVE_STATE_DIR=str(state),
                        HIVE_DASHBOARD_PORT=str(port),
                    )
                    url = f"http://127.0.0.1:{port}"
                    dashboard = await through_the_dashboard(url, state, n)
                    direct = await straight_to_the_harness(host, n)
                    other = await bus.connect(
                        HiveSettings(nats_url=server.url, nats_creds=server.identities.seed_path("approver")),
                        name="bench-echo",
                    )
                    raw = await raw_round_trip(host, other, n)
                    await other.close()
            await alice.close()
            await host.close()
        finally:
            pg.stop()
    return {
        "benchmark": "terminal",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "keystroke_to_echo_through_dashboard": summary(dashboard),
        "keystroke_to_echo_over_nats_no_dashboard": summary(direct),
        "raw_nats_request_reply": summary(raw),
    }


async def typed(
    send: Callable[[bytes], Awaitable[None]], receive: Callable[[], Awaitable[bytes]], n: int
) -> list[float]:
    """Type `n` keys one at a time, each timed until its echo is back; a line is cleared (Ctrl-U) every 26 keys."""
    times: list[float] = []
    for i in range(n):
        key = KEYS[i % len(KEYS) : i % len(KEYS) + 1]
        t = time.perf_counter()
        await send(key)
        seen = b""
        while key not in seen:
            seen += await receive()
        times.append(time.perf_counter() - t)
        if key == KEYS[-1:]:
            await send(b"\x15")
    return times


async def through_the_dashboard(url: str, state: Path, n: int) -> list[float]:
    password = (state / "dashboard" / "initial-password").read_text().strip()
    async with httpx.AsyncClient(base_url=url, timeout=30) as login:
        if (await login.post("/login", data={"password": password})).status_code != 303:
            raise BenchFailed("the dashboard refused its own initial password")
        cookie = {"Cookie": f"hive_session={login.cookies['hive_session']}"}
        csrf = (await login.get("/api/me")).json()["csrf"]
    ws_url = url.replace("http://", "ws://") + f"/ws/terminal/alice?cols=200&rows=50&csrf={csrf}"
    async with connect(ws_url, additional_headers=cookie, origin=url) as ws:  # type: ignore[arg-type]
        await ws.send('{"control": true}')
        while isinstance(await ws.recv(), bytes):  # the prompt, then the answer to control
            pass

        async def send(data: bytes) -> None:
            await ws.send(data)

        async def receive() -> bytes:
            while isinstance(frame := await ws.recv(), str):
                pass
            return frame

        await typed(send, receive, 52)  # warm
        return await typed(send, receive, n)


async def straight_to_the_harness(host: Client, n: int) -> list[float]:
    opened = await bus.call(host, subjects.harness("alice", "pty.open"), PtyOpen(cols=200, rows=50), PtySession)
    prefix = subjects.harness("alice", f"pty.{opened.session}")
    await bus.call(host, f"{prefix}.control", PtyControl(), PtyControl)
    out: asyncio.Queue[bytes] = asyncio.Queue()

    async def take(msg: Msg) -> None:
        out.put_nowait(msg.data)

    await host.subscribe(subjects.agent("alice", f"pty.{opened.session}.out"), cb=take)

    async def send(data: bytes) -> None:
        await host.publish(f"{prefix}.in", data)

    await typed(send, out.get, 52)
    times = await typed(send, out.get, n)
    await host.publish(f"{prefix}.close", b"")
    return times


async def raw_round_trip(host: Client, other: Client, n: int) -> list[float]:
    """One byte to another client of the same server and back: what any relay over NATS costs at the least."""

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data)

    sub = await other.subscribe("hive.bench.echo", cb=echo)
    await other.flush()
    times = []
    for _ in range(n + 50):
        t = time.perf_counter()
        await host.request("hive.bench.echo", b"x", timeout=5)
        times.append(time.perf_counter() - t)
    await sub.unsubscribe()
    return times[50:]


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    run(main(args.n), args.out)
