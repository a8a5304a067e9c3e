"""Stats benchmark: the recorder's ingest rate (samples and rows a second, HIVE_STATS → PostgreSQL, acknowledged)
next to a raw COPY of the same rows into a bare table in the same run; and the stats reads at a million rows: one
agent's day of one series (`GET /api/stats`'s query, bucketed), a family's totals, and the top agents by cost.

Starts its own nats-server and PostgreSQL; the recorder runs in this process (as in the dashboard), over samples
published before it starts by 20 agents as their harnesses would (TurnStats with four tools each). Prints JSON.
    uv run python bench/bench_stats.py [--samples 20000] [--rows 1000000] [--out FILE]
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
from benchhive import BenchFailed, arguments, bench_hive, run, summary
from nats.aio.client import Client
from nats.aio.msg import Msg

from hive_dashboard import stats
from hive_dashboard.recorder import BATCH, COLUMNS, Recorder, insert
from hive_dashboard.stats import Window, rows_of
from hivectl.natsserver import NatsServer
from hivectl.postgres import Postgres
from hivectl.up import prepare_database
from hyperhive import bus, streams
from hyperhive.process import free_port
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.models import TurnStats

AGENTS = [f"a{i}" for i in range(20)]
QUERIES = 50
ROWS_PER_SAMPLE = 20  # nine figures, four tools, one party each way, and five hive-wide copies


def sample(agent: str, i: int) -> bytes:
    tools = {"Read": i % 5, "Edit": i % 3, "Bash": 2, "mcp__hyperhive__send": 1}
    return bus.encode(
        TurnStats(
            agent=agent,
            model="m",
            started_at=datetime.now(UTC),
            duration_ms=1000 + i % 5000,
            exit_class="ok",
            tool_calls=tools,
            cost_usd=0.01,
            input_tokens=1000,
            output_tokens=100,
            inbox_depth=i % 4,
            received={"peer": 1},
            sent={"operator": 1},
            notes_bytes=2048,
        )
    )


async def main(samples: int, rows: int) -> dict[str, object]:
    with bench_hive() as hive:
        pg = Postgres(hive.root / "pg", port=free_port()).start()
        try:
            url = await prepare_database(pg.url(), ["dashboard"])
            server = hive.server
            for name in AGENTS:
                server.identities.add_agent(name, hive.root / "agents" / f"{name}.nk")
            server.reload()
            host = await bus.connect(
                HiveSettings(nats_url=server.url, nats_creds=server.identities.seed_path("dashboard")), name="bench"
            )
            js = host.jetstream()
            await streams.declare(js)
            pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
            try:
                ingest = await ingest_rates(server, hive.root / "agents", host, pool, samples)
                reads = await read_times(pool, rows)
            finally:
                await pool.close()
            await host.close()
        finally:
            pg.stop()
    return {"benchmark": "stats", "at": datetime.now(UTC).isoformat(timespec="seconds"), **ingest, **reads}


async def ingest_rates(
    server: NatsServer, seeds: Path, host: Client, pool: asyncpg.Pool, samples: int
) -> dict[str, object]:
    js = host.jetstream()
    stored_all = asyncio.Event()
    seen = 0

    async def count(msg: Msg) -> None:
        nonlocal seen
        seen += 1
        if seen >= samples:
            stored_all.set()

    watch = await js.subscribe(">", stream=subjects.STATS_STREAM, ordered_consumer=True, cb=count)
    conns = {
        name: await bus.connect(
            HiveSettings(nats_url=server.url, nats_creds=seeds / f"{name}.nk"),
            name=name,
            inbox_prefix=subjects.reply_prefix(name),
        )
        for name in AGENTS
    }
    for i in range(samples):
        name = AGENTS[i % len(AGENTS)]
        await conns[name].publish(subjects.agent(name, subjects.STATS), sample(name, i))
    for nc in conns.values():
        await nc.flush()
        await nc.close()
    await asyncio.wait_for(stored_all.wait(), 120)  # every sample stored before the recorder starts
    await watch.unsubscribe()
    done = asyncio.Event()
    delivered = 0
    seqs: set[int] = set()

    recorder = Recorder(host, js, pool, keep_days=30)
    original = recorder.write

    async def counted(msgs: list[Msg]) -> None:
        nonlocal delivered
        await original(msgs)
        delivered += len(msgs)
        seqs.update(m.metadata.sequence.stream for m in msgs)
        if len(seqs) >= samples:
            done.set()

    recorder.write = counted  # type: ignore[method-assign]
    t = time.perf_counter()
    task = asyncio.create_task(recorder.run())
    await asyncio.wait_for(done.wait(), 300)
    took = time.perf_counter() - t
    task.cancel()
    async with pool.acquire() as conn:
        stored = int(await conn.fetchval("SELECT count(*) FROM stats"))
        if stored != samples * ROWS_PER_SAMPLE:
            raise BenchFailed(f"the recorder wrote {stored} rows, not {samples * ROWS_PER_SAMPLE}")
        rows = [
            row
            for i in range(samples)
            for row in rows_of(subjects.agent("a0", subjects.STATS), sample("a0", i), i + 1, datetime.now(UTC))
        ]
        bare = [(agent, key, ts, value) for agent, key, ts, _, value in rows]
        await conn.execute("CREATE TABLE raw_copy (agent text, key text, ts timestamptz, value float8)")
        t = time.perf_counter()
        await conn.copy_records_to_table("raw_copy", records=bare)
        copy_took = time.perf_counter() - t
        await conn.execute("DROP TABLE raw_copy")
        await conn.execute("CREATE TABLE raw_keyed (LIKE stats INCLUDING ALL)")  # its indexes, nothing else
        t = time.perf_counter()
        await conn.copy_records_to_table("raw_keyed", records=bare, columns=COLUMNS)
        keyed_took = time.perf_counter() - t
        await conn.execute("DROP TABLE raw_keyed")
        # The recorder's statement alone, batch by batch, into the real table (its key and index): the database's
        # share of the recorder's time; the rest is reading, checking and acknowledging the messages.
        await conn.execute("TRUNCATE stats, stats_samples")
        per_batch = len(rows) // samples * BATCH
        t = time.perf_counter()
        for at in range(0, len(rows), per_batch):
            async with conn.transaction():
                await insert(conn, rows[at : at + per_batch])
        insert_took = time.perf_counter() - t
    return {
        "recorder": {
            "samples": samples,
            "rows": stored,
            "seconds": round(took, 3),
            "samples_per_s": round(samples / took),
            "rows_per_s": round(stored / took),
            "delivered_again": delivered - samples,
        },
        "recorder_statement_alone_same_rows": {
            "rows": len(rows),
            "seconds": round(insert_took, 3),
            "rows_per_s": round(len(rows) / insert_took),
        },
        "raw_copy_same_rows_into_a_table_indexed_like_stats": {
            "rows": len(rows),
            "seconds": round(keyed_took, 3),
            "rows_per_s": round(len(rows) / keyed_took),
        },
        "raw_copy_same_rows": {
            "rows": len(rows),
            "seconds": round(copy_took, 3),
            "rows_per_s": round(len(rows) / copy_took),
        },
    }


async def read_times(pool: asyncpg.Pool, total: int) -> dict[str, object]:
    """A million rows: 20 agents x 10 series at one sample a minute, back in time from now (about 3.5 days each),
    in stream-sequence order as the recorder writes them. The measured reads are one agent's last day."""
    keys = [
        "turns",
        "turn.duration_ms",
        "turn.cost_usd",
        "turn.tool_calls",
        "inbox.depth",
        "notes.bytes",
        "tool.Read",
        "tool.Bash",
        "turn.exit.ok",
        "turn.input_tokens",
    ]
    per_series = total // (len(AGENTS) * len(keys))
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE stats")
        await conn.execute(
            """INSERT INTO stats (agent, key, ts, value)
               SELECT a, k, now() - make_interval(mins => m), (m % 97)::float8
               FROM generate_series(1, $1) AS m, unnest($2::text[]) AS a, unnest($3::text[]) AS k""",
            per_series,
            AGENTS,
            keys,
        )
        await conn.execute("ANALYZE stats")
        count = int(await conn.fetchval("SELECT count(*) FROM stats"))
        now = datetime.now(UTC)
        day = Window(now - timedelta(days=1), now)
        out: dict[str, object] = {"table_rows": count}
        queries = {
            "one_agent_day_one_series": lambda: stats.series(conn, "a7", "turn.duration_ms", day),
            "one_agent_day_since_last_turn": lambda: stats.series(conn, "a7", "since_last_turn", day),
            "one_agent_day_tool_totals": lambda: stats.totals(conn, "a7", "tool", day),
            "top_agents_by_cost_day": lambda: stats.top(conn, "turn.cost_usd", day, 10),
        }
        # Fresh rows (as just written: every heap page is read), then once vacuumed (as autovacuum leaves a table
        # that is mostly old rows: index-only scans).
        for when in ("fresh", "vacuumed"):
            if when == "vacuumed":
                await conn.execute("VACUUM ANALYZE stats")
            results: dict[str, object] = {}
            for name, query in queries.items():
                await query()  # warm: the plan cached, the pages in memory
                times = []
                for _ in range(QUERIES):
                    t = time.perf_counter()
                    await query()
                    times.append(time.perf_counter() - t)
                results[name] = summary(times)
            plan = await conn.fetch(
                "EXPLAIN (ANALYZE, BUFFERS) " + stats.BUCKETED, "a7", "turn.duration_ms", day.since, day.until, day.step
            )
            results["one_agent_day_plan"] = [r[0] for r in plan]
            out[when] = results
    return out


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--samples", type=int, default=20_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    run(main(args.samples, args.rows), args.out)
