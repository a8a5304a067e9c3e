"""Broker benchmark: send→recv latency (an agent's send, and a tool's) and delivered throughput, next to raw NATS on
the same server, in one run.

Starts its own nats-server and a broker process (`python -m hive_broker`), as `hivectl up` would, and prints JSON.
    uv run python bench/bench_broker.py [--messages 10000] [--agents 100] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import time
from collections.abc import Awaitable
from pathlib import Path

from benchhive import BenchFailed, arguments, bench_hive, run, summary
from nats.aio.client import Client

from hivectl.natsserver import NatsServer
from hyperhive import bus, streams
from hyperhive.identity import mint_seed
from hyperhive.inbox import Inbox
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentPolicy, SendReply, SendRequest, ToolGrant


class Bench:
    def __init__(self, server: NatsServer, root: Path) -> None:
        self.server = server
        self.root = root

    def settings(self, principal: str, seed: Path | None = None) -> HiveSettings:
        return HiveSettings(nats_url=self.server.url, nats_creds=seed or self.server.identities.seed_path(principal))

    async def agent(self, name: str) -> Client:
        return await bus.connect(
            self.settings(name, self.root / "agents" / f"{name}.nk"),
            name=name,
            inbox_prefix=subjects.reply_prefix(name),
        )


async def raw_request_reply(b: Bench, n: int) -> list[float]:
    svc = await bus.connect(b.settings("broker"), name="echo")
    client = await bus.connect(b.settings("approver"), name="client")

    async def echo(msg):  # type: ignore[no-untyped-def]
        await msg.respond(msg.data)

    await svc.subscribe("bench.echo", cb=echo)
    await svc.flush()
    out = []
    payload = b'{"to":"bob","body":"' + b"x" * 100 + b'"}'
    for _ in range(n):
        t = time.perf_counter()
        await client.request("bench.echo", payload, timeout=5)
        out.append(time.perf_counter() - t)
    await svc.close()
    await client.close()
    return out


async def raw_js_publish(b: Bench, n: int) -> list[float]:
    nc = await bus.connect(b.settings("spawner"), name="js")
    js = nc.jetstream()
    await js.add_stream(name="BENCH", subjects=["bench.js.>"])
    out = []
    for i in range(n):
        t = time.perf_counter()
        await js.publish("bench.js.x", b"x" * 150, headers={"Nats-Msg-Id": f"m{i}"})
        out.append(time.perf_counter() - t)
    await js.delete_stream("BENCH")
    await nc.close()
    return out


async def send_recv_latency(b: Bench, n: int, tool: bool = False) -> tuple[list[float], list[float]]:
    """Each message's send → recv, and the receiver's ack of it (`Inbox.ack` returning); sent by agent alice, or
    by tool ci (its own account, its grant checked by the broker)."""
    if tool:
        alice, where = (
            await bus.connect(b.settings("ci", b.root / "tools" / "ci.nk"), name="ci"),
            subjects.tool("ci", "send"),
        )
    else:
        alice, where = await b.agent("alice"), subjects.agent("alice", "send")
    bob = await b.agent("bob")
    inbox = Inbox(bob, "bob")
    await inbox.open()
    out, acks = [], []
    for i in range(n):
        recv = asyncio.create_task(inbox.take(max_messages=1, wait=30))
        await asyncio.sleep(0)  # let the pull go out first: we measure a waiting receiver being woken
        t = time.perf_counter()
        await bus.call(alice, where, SendRequest(to="bob", body=f"message {i}"), SendReply)
        got, _ = await recv
        out.append(time.perf_counter() - t)
        if len(got) != 1:
            raise BenchFailed(f"bob took {len(got)} messages for message {i}, not 1")
        t = time.perf_counter()
        await inbox.ack([got[0].token])
        acks.append(time.perf_counter() - t)
    await alice.close()
    await bob.close()
    return out, acks


async def timed(*work: Awaitable[object]) -> float:
    """Seconds until all of `work`, run at once, is done."""
    t = time.perf_counter()
    await asyncio.gather(*work)
    return time.perf_counter() - t


def rate(clients: int, count: int, seconds: float, counted: str, per_s: str) -> dict[str, float]:
    return {"clients": clients, counted: count, "seconds": round(seconds, 3), per_s: round(count / seconds)}


async def throughput(b: Bench, pairs: int, per_sender: int) -> dict[str, float]:
    """`pairs` senders each send `per_sender` messages to their own receiver, which takes up to 32 at a time
    from its own inbox and acknowledges them."""
    senders = [await b.agent(f"s{i}") for i in range(pairs)]
    receiving = [await b.agent(f"r{i}") for i in range(pairs)]
    receivers = [Inbox(nc, f"r{i}") for i, nc in enumerate(receiving)]
    for inbox in receivers:
        await inbox.open()

    async def sender(i: int) -> None:
        subject = subjects.agent(f"s{i}", "send")
        for k in range(per_sender):
            await bus.call(senders[i], subject, SendRequest(to=f"r{i}", body=f"m{k}"), SendReply)

    takes = 0

    async def receiver(inbox: Inbox) -> None:
        nonlocal takes
        got = 0
        while got < per_sender:
            messages, _ = await inbox.take(max_messages=32, wait=30)
            takes += 1
            if not messages:
                raise BenchFailed(f"{inbox.owner} waited 30 s for a message with {per_sender - got} still to come")
            got += len(messages)
            await inbox.ack([m.token for m in messages])

    elapsed = await timed(*(sender(i) for i in range(pairs)), *(receiver(inbox) for inbox in receivers))
    for nc in [*senders, *receiving]:
        await nc.close()
    total = pairs * per_sender
    return {
        **rate(2 * pairs, total, elapsed, "messages", "delivered_per_s"),
        "messages_per_take": round(total / takes, 2),
    }


async def raw_request_throughput(b: Bench, clients: int, per_client: int) -> dict[str, float]:
    svc = await bus.connect(b.settings("broker"), name="echo")

    async def echo(msg):  # type: ignore[no-untyped-def]
        await msg.respond(msg.data)

    await svc.subscribe("bench.echo2", cb=echo)
    await svc.flush()
    conns = [await bus.connect(b.settings("approver"), name=f"c{i}") for i in range(clients)]

    async def client(nc: Client) -> None:
        for _ in range(per_client):
            await nc.request("bench.echo2", b"x" * 100, timeout=10)

    elapsed = await timed(*(client(nc) for nc in conns))
    for nc in [svc, *conns]:
        await nc.close()
    return rate(clients, clients * per_client, elapsed, "requests", "requests_per_s")


async def raw_js_publish_throughput(b: Bench, clients: int, per_client: int) -> dict[str, float]:
    conns = [await bus.connect(b.settings("spawner"), name=f"p{i}") for i in range(clients)]
    await conns[0].jetstream().add_stream(name="BENCH2", subjects=["bench.js2.>"])

    async def publisher(i: int, nc: Client) -> None:
        js = nc.jetstream()
        for k in range(per_client):
            await js.publish(f"bench.js2.{i}", b"x" * 150, headers={"Nats-Msg-Id": f"{i}-{k}"})

    elapsed = await timed(*(publisher(i, nc) for i, nc in enumerate(conns)))
    await conns[0].jetstream().delete_stream("BENCH2")
    for nc in conns:
        await nc.close()
    return rate(clients, clients * per_client, elapsed, "messages", "stored_per_s")


async def main(args: argparse.Namespace) -> dict[str, object]:
    with bench_hive() as hive:
        server, root = hive.server, hive.root
        b = Bench(server, root)
        names = [
            "alice",
            "bob",
            *(f"s{i}" for i in range(args.agents // 2)),
            *(f"r{i}" for i in range(args.agents // 2)),
        ]
        for name in names:
            server.identities.add_agent(name, root / "agents" / f"{name}.nk")
        tool = ToolGrant(name="ci", public_key=mint_seed(root / "tools" / "ci.nk"), send=["bob"])
        server.identities.add_tool(tool)  # what the spawner's tool-add does
        server.reload()
        setup = await bus.connect(b.settings("spawner"), name="setup")
        js = setup.jetstream()
        await streams.declare(js)
        kv = await js.key_value(subjects.POLICY_BUCKET)
        for name in names:
            partner = {"alice": "bob"}.get(name) or (f"r{name[1:]}" if name.startswith("s") else None)
            policy = AgentPolicy(agent=name, allowedRecipients=[partner] if partner else [])  # type: ignore[call-arg]
            await kv.put(name, bus.encode(policy))
        await (await js.key_value(subjects.TOOLS_BUCKET)).put("ci", bus.encode(tool))
        await setup.close()
        hive.service("broker")

        n = args.messages
        raw_rr = summary(await raw_request_reply(b, n))
        raw_js = summary(await raw_js_publish(b, n))
        latencies, acks = await send_recv_latency(b, n)
        ours = summary(latencies)
        tool_latencies, _ = await send_recv_latency(b, n, tool=True)
        by_tool = summary(tool_latencies)
        tput = await throughput(b, args.agents // 2, args.per_sender)
        raw_tput = await raw_request_throughput(b, args.agents, args.per_sender)
        raw_js_tput = await raw_js_publish_throughput(b, args.agents, args.per_sender)
        return {
            "benchmark": "broker",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "send_to_recv_latency": ours,
            "ack_latency": summary(acks),
            "tool_send_to_recv_latency": by_tool,
            "latency_ratio_p50_tool_vs_agent": round(by_tool["p50_ms"] / ours["p50_ms"], 2),
            "raw_nats_request_reply": raw_rr,
            "raw_jetstream_publish": raw_js,
            "latency_ratio_p50_vs_raw_request": round(ours["p50_ms"] / raw_rr["p50_ms"], 2),
            "throughput": tput,
            "raw_nats_request_throughput": raw_tput,
            "raw_jetstream_publish_throughput": raw_js_tput,
            "targets": {"p50_ms": 1.0, "p99_ms": 5.0, "delivered_per_s": 5000},
        }


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--per-sender", type=int, default=400)
    args = parser.parse_args()
    run(main(args), args.out)
