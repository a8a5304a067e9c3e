"""Recovery benchmark: nats-server killed with SIGKILL and started again on the same store, while a harness's inbox
waits in its long poll and the broker runs as its own process. Measured: restart → the first message sent after it
delivered to the waiting harness (target ≤ 2 s; before pulls were issued again on reconnect: up to 180 s).

    uv run python bench/bench_recovery.py [--rounds 5] [--out FILE]
"""

from __future__ import annotations

import asyncio
import signal
import time

from benchhive import BenchFailed, arguments, bench_hive, percentile, run

from hyperhive import bus, streams
from hyperhive.inbox import Inbox
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.errors import HiveError
from hyperhive.wire.models import AgentPolicy, SendReply, SendRequest

GIVE_UP = 30.0  # seconds after a restart with no send answered: the broker did not come back


async def main(rounds: int) -> dict[str, object]:
    with bench_hive() as hive:
        server = hive.server
        for name in ("alice", "bob"):
            server.identities.add_agent(name, hive.root / "agents" / f"{name}.nk")
        server.reload()

        def settings(principal: str) -> HiveSettings:
            seed = hive.root / "agents" / f"{principal}.nk"
            creds = seed if seed.exists() else server.identities.seed_path(principal)
            return HiveSettings(nats_url=server.url, nats_creds=creds)

        spawner = await bus.connect(settings(subjects.SPAWNER), name="bench")
        await streams.declare(spawner.jetstream())
        kv = await spawner.jetstream().key_value(subjects.POLICY_BUCKET)
        for name in ("alice", "bob"):
            await kv.put(name, bus.encode(AgentPolicy(agent=name, allowedRecipients=["bob"])))  # type: ignore[call-arg]
        hive.service(subjects.BROKER)
        alice = await bus.connect(settings("alice"), name="alice", inbox_prefix=subjects.reply_prefix("alice"))
        bob_nc = await bus.connect(settings("bob"), name="bob", inbox_prefix=subjects.reply_prefix("bob"))
        bob = Inbox(bob_nc, "bob")
        await bob.open()
        samples = []
        for n in range(rounds):
            waiting = asyncio.ensure_future(bob.take(wait=170))
            await bob_nc.flush()
            assert server.child is not None
            server.child.stop(signal.SIGKILL)
            server.start()
            restarted = time.perf_counter()
            while True:  # the first send that the reconnected broker answers
                try:
                    request = SendRequest(to="bob", body=f"round {n}")
                    await bus.call(alice, subjects.agent("alice", "send"), request, SendReply, timeout=1)
                    break
                except HiveError as exc:
                    if time.perf_counter() - restarted > GIVE_UP:
                        raise BenchFailed(f"round {n}: no send answered {GIVE_UP:g} s after restart: {exc}") from exc
                    await asyncio.sleep(0.05)  # a retry interval while the broker reconnects
            try:
                messages, _ = await asyncio.wait_for(waiting, 170)
            except TimeoutError:
                raise BenchFailed(f"round {n}: the message sent after the restart never reached bob's inbox") from None
            if not messages:
                raise BenchFailed(f"round {n}: bob's long poll ended without the message sent after the restart")
            samples.append(time.perf_counter() - restarted)
            await bob.ack([m.token for m in messages])
        for nc in (alice, bob_nc, spawner):
            await nc.close()
    return {
        "benchmark": "recovery",
        "what": "nats-server SIGKILL + restart → first message delivered to a waiting harness",
        "rounds": rounds,
        "seconds": [round(s, 3) for s in samples],
        "p50_s": round(percentile(samples, 50), 3),
        "max_s": round(max(samples), 3),
        "target_s": 2.0,
    }


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    run(main(args.rounds), args.out)
