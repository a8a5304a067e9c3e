"""Approver benchmark: operator decision → command on the spawner's queue, and ask → question event visible.

Starts its own nats-server, PostgreSQL and an approver process (as `hivectl up` would), prints JSON, with a raw
NATS request/reply and a raw PostgreSQL conditional UPDATE measured in the same run.
    uv run python bench/bench_approver.py [--n 500] [--out FILE]
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
from benchhive import BenchHive, arguments, bench_hive, run, summary
from nats.js import api as js_api

from hivectl.postgres import Postgres
from hivectl.up import prepare_database
from hyperhive import bus, streams
from hyperhive.process import free_port
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentPolicy, Approval, ApprovalRequest, AskReply, AskRequest, DecisionRequest


async def main(n: int) -> dict[str, object]:
    with bench_hive() as hive:
        pg = Postgres(hive.root / "pg", port=free_port()).start()
        try:
            return await measure(n, hive, pg)
        finally:
            pg.stop()


async def measure(n: int, hive: BenchHive, pg: Postgres) -> dict[str, object]:
    server, root = hive.server, hive.root
    database_url = await prepare_database(pg.url(), ["approver"])
    manager_seed = root / "manager.nk"
    server.identities.add_agent("manager", manager_seed)
    server.reload()
    settings = lambda who: HiveSettings(nats_url=server.url, nats_creds=server.identities.seed_path(who))  # noqa: E731
    spawner = await bus.connect(settings("spawner"), name="bench-spawner")
    js = spawner.jetstream()
    await streams.declare(js)
    kv = await js.key_value(subjects.POLICY_BUCKET)
    await kv.put("manager", bus.encode(AgentPolicy(agent="manager")))
    hive.service("approver", HIVE_DATABASE_URL=database_url)
    operator = await bus.connect(settings("operator"), name="bench-operator", inbox_prefix="_INBOX.operator")
    manager = await bus.connect(
        HiveSettings(nats_url=server.url, nats_creds=manager_seed), name="manager", inbox_prefix="_INBOX.manager"
    )
    queue = await js.pull_subscribe(
        subjects.spawner_cmd(),
        durable="bench",
        stream=subjects.SPAWNER_CMD_STREAM,
        config=js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.EXPLICIT),
    )
    decide: list[float] = []
    for i in range(n):
        req = ApprovalRequest(agent=f"b{i}", description="bench")
        pending = await bus.call(manager, subjects.agent("manager", "request.spawn"), req, Approval)
        fetch = asyncio.create_task(queue.fetch(1, timeout=10))
        t = time.perf_counter()
        await bus.call(
            operator, subjects.operator(subjects.APPROVER, "approve"), DecisionRequest(id=pending.id), Approval
        )
        [msg] = await fetch
        decide.append(time.perf_counter() - t)
        await msg.ack()

    events = await spawner.subscribe(f"{subjects.EVENTS_PREFIX}.question_added.>")
    ask: list[float] = []
    for i in range(n):
        t = time.perf_counter()
        await bus.call(manager, subjects.agent("manager", "ask"), AskRequest(question=f"q{i}?"), AskReply)
        await events.next_msg(timeout=10)
        ask.append(time.perf_counter() - t)

    async def echo(msg):  # type: ignore[no-untyped-def]
        await msg.respond(msg.data)

    await spawner.subscribe("bench.echo", cb=echo)
    raw: list[float] = []
    for _ in range(n):
        t = time.perf_counter()
        await spawner.request("bench.echo", b"{}", timeout=5)
        raw.append(time.perf_counter() - t)
    conn = await asyncpg.connect(database_url)
    await conn.execute("CREATE TABLE bench (id int PRIMARY KEY, status text)")
    await conn.executemany("INSERT INTO bench VALUES ($1, 'pending')", [(i,) for i in range(n)])
    update: list[float] = []
    for i in range(n):
        t = time.perf_counter()
        await conn.fetchrow("UPDATE bench SET status = 'approved' WHERE id = $1 AND status = 'pending' RETURNING *", i)
        update.append(time.perf_counter() - t)
    await conn.close()
    for nc in (manager, operator, spawner):
        await nc.close()
    return {
        "benchmark": "approver",
        "decision_to_spawner_queue": summary(decide),
        "ask_to_question_event": summary(ask),
        "raw_nats_request_reply": summary(raw),
        "raw_postgres_conditional_update": summary(update),
    }


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--n", type=int, default=500)
    args = parser.parse_args()
    run(main(args.n), args.out)
