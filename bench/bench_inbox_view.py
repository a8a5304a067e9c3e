"""Inbox view benchmark: the operator's `hive.broker.inbox` (the last 50 messages) of an inbox of 10,000 and of one of
200,000 messages, from the request to the answer. Prints JSON.

Each `--broker NAME=PYTHON` is `python -m hive_broker` from that Python's environment (a worktree of an earlier
commit, say), measured on the same nats-server in the same run as the others: one broker at a time, in rounds that
alternate their order. Without, the broker of this checkout. Each round stores the inboxes afresh once its broker
has started, since a broker's start sets the inbox stream's limits (an inbox over the per-subject limit is cut).
    uv run python bench/bench_inbox_view.py [--sizes 10000 200000] [--views 3] [--rounds 2]
        [--broker before=/tmp/bench-before/.venv/bin/python --broker after=.venv/bin/python] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime

from benchhive import BenchFailed, BenchHive, arguments, bench_hive, run, summary
from nats.aio.client import Client

from hyperhive import bus, streams
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentPolicy, InboxReply, InboxRequest, Message

LIMIT = 50  # what `hivectl inbox` asks for


async def fill(nc: Client, owner: str, count: int) -> None:
    """Store `count` messages in `owner`'s inbox as fast as the server takes them: plain publishes, then one
    acknowledged publish, which JetStream stores after everything before it on the same connection."""
    at = datetime.now(UTC)
    for n in range(count - 1):
        message = Message(id=f"m{n:08d}", sender="alice", to=owner, body=f"message {n}", sent_at=at)
        await nc.publish(subjects.inbox(owner), bus.encode(message))
    last = Message(id=f"m{count - 1:08d}", sender="alice", to=owner, body=f"message {count - 1}", sent_at=at)
    await nc.jetstream().publish(subjects.inbox(owner), bus.encode(last))


async def view(operator: Client, owner: str, count: int) -> float:
    """One operator's view of `owner`'s inbox, timed; its entries must be the inbox's last `LIMIT`."""
    t = time.perf_counter()
    reply = await bus.call(operator, subjects.operator(subjects.BROKER, "inbox"), InboxRequest(owner=owner),
                           InboxReply, timeout=600)  # fmt: skip
    elapsed = time.perf_counter() - t
    bodies = [entry.message.body for entry in reply.entries]
    if bodies != [f"message {n}" for n in range(count - LIMIT, count)]:
        raise BenchFailed(f"the view of {owner} showed {len(bodies)} messages, not its last {LIMIT}: {bodies[:3]}…")
    return elapsed


async def measure(
    hive: BenchHive, brokers: dict[str, str], sizes: list[int], views: int, rounds: int
) -> dict[str, object]:
    def settings(who: str) -> HiveSettings:
        return HiveSettings(nats_url=hive.server.url, nats_creds=hive.server.identities.seed_path(who))

    setup = await bus.connect(settings(subjects.SPAWNER), name="bench-setup")
    js = setup.jetstream()
    await streams.declare(js)
    kv = await js.key_value(subjects.POLICY_BUCKET)
    owners = {size: f"n{size}" for size in sizes}
    for owner in owners.values():
        await kv.put(owner, bus.encode(AgentPolicy(agent=owner)))
    store = await bus.connect(settings(subjects.BROKER), name="bench-store")  # may write any inbox
    operator = await bus.connect(settings("operator"), name="bench-operator", inbox_prefix="_INBOX.operator")
    samples: dict[str, dict[int, list[float]]] = {name: {size: [] for size in sizes} for name in brokers}
    for r in range(rounds):
        for name in list(brokers)[:: 1 if r % 2 == 0 else -1]:
            broker = hive.service(subjects.BROKER, python=brokers[name])
            config = (await js.stream_info(subjects.INBOX_STREAM)).config
            config.max_msgs_per_subject = max(sizes)  # beyond the hive's own limit, so the large inbox fits
            await js.update_stream(config)
            await js.purge_stream(subjects.INBOX_STREAM)
            for size, owner in owners.items():
                await fill(store, owner, size)
            for size, owner in owners.items():
                samples[name][size] += [await view(operator, owner, size) for _ in range(views)]
            broker.stop()
            hive.children.remove(broker)
    for nc in (setup, store, operator):
        await nc.close()
    figures = {name: {str(size): summary(got, (50, 100), 1) for size, got in by_size.items()}
               for name, by_size in samples.items()}  # fmt: skip
    out: dict[str, object] = {"views": figures}
    if len(brokers) == 2:
        first, second = brokers
        out[f"p50_ratio_{first}_to_{second}"] = {
            str(size): round(figures[first][str(size)]["p50_ms"] / figures[second][str(size)]["p50_ms"], 1)
            for size in sizes
        }
    return out


async def main(args: argparse.Namespace) -> dict[str, object]:
    brokers = dict(spec.split("=", 1) for spec in args.broker) if args.broker else {"this": sys.executable}
    with bench_hive() as hive:
        results = await measure(hive, brokers, args.sizes, args.views, args.rounds)
    return {"benchmark": "inbox_view", "limit": LIMIT, "brokers": brokers, "rounds": args.rounds, **results}


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 200_000])
    parser.add_argument("--views", type=int, default=3, help="views of each inbox per broker and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--broker", action="append", metavar="NAME=PYTHON", help="a broker to measure (repeat)")
    args = parser.parse_args()
    run(main(args), args.out)
