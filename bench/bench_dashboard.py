"""Dashboard benchmark: an event published on NATS → seen by an SSE client of `/events`, next to a raw NATS
subscriber of the same subject in the same run; the same with 100 SSE clients at once; and the home page's render
with 100 agents' rows and 50 pending approvals.

Starts its own nats-server, PostgreSQL, a broker, an approver and a dashboard process (as `hivectl up` would); the
spawner's `agents` verb is answered by the benchmark with 100 agents (a real spawner would run 100 sandboxes).
Prints JSON.
    uv run python bench/bench_dashboard.py [--n 500] [--clients 100] [--out FILE]
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import httpx2 as httpx
from benchhive import BenchFailed, BenchHive, EventStream, arguments, bench_hive, run, summary
from nats.js import JetStreamContext
from playwright.async_api import expect

from hivectl.postgres import Postgres
from hivectl.up import prepare_database
from hivetest.browser import chromium
from hyperhive import bus, events, streams
from hyperhive.process import free_port
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.models import (
    AgentPolicy,
    AgentsReply,
    AgentStateChanged,
    AgentStatus,
    Approval,
    ApprovalRequest,
    Empty,
)

STATES = ("stopped", "running")
AGENTS = 100
APPROVALS = 50


async def main(n: int, clients: int) -> dict[str, object]:
    with bench_hive() as hive:
        pg = Postgres(hive.root / "pg", port=free_port()).start()
        try:
            return await measure(n, clients, hive, pg)
        finally:
            pg.stop()


async def measure(n: int, clients: int, hive: BenchHive, pg: Postgres) -> dict[str, object]:
    server, root = hive.server, hive.root
    database_url = await prepare_database(pg.url(), ["approver", "dashboard"])
    manager_seed = root / "manager.nk"
    server.identities.add_agent("manager", manager_seed)
    server.reload()
    settings = lambda who: HiveSettings(nats_url=server.url, nats_creds=server.identities.seed_path(who))  # noqa: E731
    spawner = await bus.connect(settings("spawner"), name="bench-spawner")
    js = spawner.jetstream()
    await streams.declare(js)
    kv = await js.key_value(subjects.POLICY_BUCKET)
    await kv.put("manager", bus.encode(AgentPolicy(agent="manager")))
    names = [f"a{i:03d}" for i in range(AGENTS)]

    async def agents(subject: str, req: Empty) -> AgentsReply:
        return AgentsReply(agents=[AgentStatus(name=name, state="running") for name in names])

    endpoint = bus.operator_verb(subjects.SPAWNER, "agents", Empty, agents)
    async with bus.serve(spawner, name="spawner", version="0.0.1", description="bench", endpoints=[endpoint]):
        state = root / "state"
        hive.service("broker", HIVE_STATE_DIR=str(state))
        hive.service("approver", HIVE_DATABASE_URL=database_url)
        port = free_port()
        hive.service(
            "dashboard", HIVE_DATABASE_URL=database_url, HIVE_STATE_DIR=str(state), HIVE_DASHBOARD_PORT=str(port)
        )
        manager = await bus.connect(
            HiveSettings(nats_url=server.url, nats_creds=manager_seed), name="manager", inbox_prefix="_INBOX.manager"
        )
        for i in range(APPROVALS):
            req = ApprovalRequest(agent=f"s{i:03d}", description=f"a spawn for the benchmark, #{i}")
            await bus.call(manager, subjects.agent("manager", "request.spawn"), req, Approval)
        url = f"http://127.0.0.1:{port}"
        password = (state / "dashboard" / "initial-password").read_text().strip()
        login = httpx.AsyncClient(base_url=url, timeout=30)
        if (await login.post("/login", data={"password": password})).status_code != 303:
            raise BenchFailed("the dashboard refused its own initial password")
        cookies = dict(login.cookies)

        render: list[float] = []
        for _ in range(50):
            t = time.perf_counter()
            page = await login.get("/")
            render.append(time.perf_counter() - t)
            if page.status_code != 200 or page.text.count('"status": "pending"') != APPROVALS:
                raise BenchFailed(f"the home page is not what it should be ({page.status_code})")
        snapshot: list[float] = []
        for _ in range(50):
            t = time.perf_counter()
            reply = await login.get("/api/snapshot")
            snapshot.append(time.perf_counter() - t)
            if len(reply.json()["agents"]) != AGENTS:
                raise BenchFailed("the snapshot does not have every agent's row")

        raw_arrived: list[float] = []
        raw_changed = asyncio.Event()

        async def arrived(msg: object) -> None:  # stamped as it comes, like the SSE clients' lines
            raw_arrived.append(time.perf_counter())
            raw_changed.set()

        await spawner.subscribe(f"{subjects.EVENTS_PREFIX}.agent_state.>", cb=arrived)
        as_of = reply.json()["as_of"]

        async def raw_seen(count: int) -> float:
            while len(raw_arrived) < count:
                raw_changed.clear()
                await asyncio.wait_for(raw_changed.wait(), 10)
            return raw_arrived[count - 1]

        async def one_event(i: int, streams_: list[EventStream]) -> tuple[float, list[float]]:
            body = events.envelope(
                "agent_state", names[i % AGENTS], AgentStateChanged(agent=names[i % AGENTS], state="running")
            )
            published = len(raw_arrived) + 1
            t = time.perf_counter()
            ack = await js.publish(subjects.event("agent_state", names[i % AGENTS]), body)
            raw_at = await raw_seen(published) - t
            return raw_at, [await s.seen(ack.seq) - t for s in streams_]

        browser_lat = await in_the_browser(url, password, max(50, n // 5), one_event_only(js, names))

        single = EventStream(httpx.AsyncClient(base_url=url, cookies=cookies, timeout=None), as_of)
        await asyncio.wait_for(single.ready.wait(), 10)
        raw_lat: list[float] = []
        sse_lat: list[float] = []
        for i in range(n):
            r, [s] = await one_event(i, [single])
            raw_lat.append(r)
            sse_lat.append(s)
        single.task.cancel()
        after = (await js.stream_info(subjects.EVENTS_STREAM)).state.last_seq

        many = [
            EventStream(httpx.AsyncClient(base_url=url, cookies=cookies, timeout=None), after) for _ in range(clients)
        ]
        await asyncio.wait_for(asyncio.gather(*(s.ready.wait() for s in many)), 30)
        raw_many: list[float] = []
        sse_many: list[float] = []
        for i in range(max(20, n // 5)):
            r, seen = await one_event(i, many)
            raw_many.append(r)
            sse_many.extend(seen)
        for stream in many:
            stream.task.cancel()
        await asyncio.gather(*(stream.task for stream in [single, *many]), return_exceptions=True)
        await login.aclose()
        await manager.close()
    await spawner.close()
    return {
        "benchmark": "dashboard",
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "event_to_sse_client": summary(sse_lat),
        "event_to_raw_nats_subscriber": summary(raw_lat),
        f"event_to_each_of_{clients}_sse_clients": summary(sse_many),
        f"event_to_raw_nats_subscriber_with_{clients}_sse_clients": summary(raw_many),
        f"event_to_browser_dom_with_{AGENTS}_rows": summary(browser_lat),
        f"home_page_render_{AGENTS}_agents_{APPROVALS}_approvals": summary(render),
        f"snapshot_api_{AGENTS}_agents_{APPROVALS}_approvals": summary(snapshot),
    }


def one_event_only(js: JetStreamContext, names: list[str]) -> Callable[[int], Awaitable[tuple[float, int]]]:
    """Publish the `i`th event (a state that differs from the last, so the row changes); when, and its sequence."""

    async def publish(i: int) -> tuple[float, int]:
        name = names[0]
        body = events.envelope("agent_state", name, AgentStateChanged(agent=name, state=STATES[i % 2]))
        t = time.perf_counter()
        ack = await js.publish(subjects.event("agent_state", name), body)
        return t, ack.seq

    return publish


async def in_the_browser(
    url: str, password: str, n: int, publish: Callable[[int], Awaitable[tuple[float, int]]]
) -> list[float]:
    """Event published → the home page's DOM changed (a MutationObserver tells us through a Playwright binding, so
    the figure includes that hop), with 100 agents' rows and 50 approvals on the page, in headless Chromium."""
    seen: dict[int, float] = {}
    changed = asyncio.Event()

    def tell(source: object, seq: int) -> None:
        seen[int(seq)] = time.perf_counter()
        changed.set()

    async with chromium() as browser:
        page = await browser.new_page()
        await page.goto(url + "/login")
        await page.fill("#password", password)
        await page.click("button[type=submit]")
        await expect(page.locator("#conn")).to_have_text("live")
        await page.expose_binding("hiveSeen", tell)
        await page.evaluate(
            """() => new MutationObserver(() => window.hiveSeen(window.hiveLive.last))
                .observe(document.getElementById("agents"), { childList: true, subtree: true, characterData: true })"""
        )
        lat: list[float] = []
        for i in range(n):
            t, seq = await publish(i)
            while seq not in seen:
                changed.clear()
                await asyncio.wait_for(changed.wait(), 10)
            lat.append(seen[seq] - t)
    return lat


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--clients", type=int, default=100)
    args = parser.parse_args()
    run(main(args.n, args.clients), args.out)
