"""A hundred agents on one host: what each costs. Prints JSON.

The spawner's own code (`hive_spawner.service.Spawner`, local backend) applies `--agents` spawn commands at once:
each agent's repos, its agent.nix evaluated, its credential minted, its sandbox started with the real harness; the
broker (`python -m hive_broker`) wakes each with its "you were started" message, and the real claude CLI runs that
turn against a scripted Messages API on loopback, taking the host's turn slots (`HIVE_TURN_SLOTS`). Measured:
- the storm: from the start to each agent's first `turn_state` (its harness ready), p50/p99, and until all are;
- the burst of wake-up turns: until every agent's first turn has ended (its `TurnStats`);
- the broker's answer to an operator request while the storm runs, next to the same request before it;
- idle: the RSS of every harness and of the host services, and the CPU all of them use over `--idle-seconds`
  (heartbeats and long polls included), as a share of one core.
    uv run python bench/bench_scale.py [--agents 100] [--idle-seconds 30] [--out FILE]   (as root: own uids)
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from benchhive import BenchFailed, arguments, bench_hive, run, summary
from nats.aio.msg import Msg

from hive_spawner.repos import ConfigRepos
from hive_spawner.service import Spawner
from hive_spawner.settings import SpawnerSettings
from hivetest.claude import CLAUDE, SCRIPTED_ENV
from hivetest.messages_api import Text, serve_messages_api
from hyperhive import bus, streams
from hyperhive.wire import subjects
from hyperhive.wire.errors import HiveError
from hyperhive.wire.models import DepthsReply, Empty, SpawnerCommand
from hyperhive.wire.names import OPERATOR

TICKS = os.sysconf("SC_CLK_TCK")


def processes(wanted: Callable[[list[bytes]], bool]) -> list[int]:
    """The pids whose command line (its arguments) is `wanted`."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and wanted(argv):
                found.append(int(proc.name))
    return found


def is_harness(argv: list[bytes]) -> bool:
    """`python -I -m hive_harness` itself, not the bwrap processes around it (whose arguments hold it too)."""
    return not argv[0].endswith(b"bwrap") and argv[1:4] == [b"-I", b"-m", b"hive_harness"]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / TICKS


async def operator_latencies(nc: object, stop: asyncio.Event, out: list[float], failed: list[str]) -> None:
    """The broker's `depths`, asked every 50 ms (a timer: this samples, it waits for nothing) until `stop`; what it
    could not answer is counted, not fatal."""
    while not stop.is_set():
        t = time.perf_counter()
        try:
            await bus.call(nc, subjects.operator(subjects.BROKER, "depths"), Empty(), DepthsReply, 30)  # type: ignore[arg-type]
        except HiveError as exc:
            failed.append(exc.message)
        else:
            out.append(time.perf_counter() - t)
        await asyncio.sleep(0.05)


async def main(agents: int, idle_seconds: float) -> dict[str, object]:
    with serve_messages_api() as api, bench_hive() as hive:
        api.responder = lambda body: [Text("Noted.")]
        server = hive.server
        claude_env = {**SCRIPTED_ENV, "ANTHROPIC_BASE_URL": api.url}
        agent_env = {"HIVE_CLAUDE": json.dumps([str(CLAUDE)]), "HIVE_CLAUDE_ENV": json.dumps(claude_env)}
        settings = SpawnerSettings(
            nats_url=server.url,
            nats_creds=server.identities.seed_path(subjects.SPAWNER),
            state_dir=hive.root / "spawner",
            nats_auth_dir=server.root,
            agent_env=agent_env,
        )
        nc = await bus.connect(settings, name="bench")
        operator = await bus.connect(
            settings.model_copy(update={"nats_creds": server.identities.seed_path(OPERATOR)}),
            name="operator",
            inbox_prefix=subjects.reply_prefix(OPERATOR),
        )
        js = nc.jetstream()
        await streams.declare(js)
        broker = hive.service("broker")
        spawner = Spawner(nc, js, ConfigRepos(settings.state_dir / "config"), settings.state_dir / "agents", settings)
        try:
            return await measure(agents, idle_seconds, nc, operator, spawner, broker.pid, server)
        finally:
            spawner.backend.stop_all()
            await operator.close()
            await nc.close()


async def measure(  # type: ignore[no-untyped-def]  # noqa: PLR0917 - one run's parts
    agents, idle_seconds, nc, operator, spawner, broker_pid, server
) -> dict[str, object]:
    names = [f"a{i}" for i in range(agents)]
    ready: dict[str, float] = {}
    turned: dict[str, float] = {}
    all_ready, all_turned = asyncio.Event(), asyncio.Event()
    t0 = 0.0

    crashed: dict[str, list[str]] = {}

    def settled() -> None:
        if len(ready.keys() | crashed.keys()) == agents:
            all_ready.set()
        if len(turned.keys() | crashed.keys()) == agents:
            all_turned.set()

    async def on_state(msg: Msg) -> None:
        ready.setdefault(subjects.caller(msg.subject), time.perf_counter() - t0)
        settled()

    async def on_stats(msg: Msg) -> None:
        turned.setdefault(subjects.caller(msg.subject), time.perf_counter() - t0)
        settled()

    async def on_crash(msg: Msg) -> None:
        name = msg.subject.rsplit(".", 1)[-1]
        crashed[name] = spawner.backend.journal(name, 8)
        print(f"{name} crashed:", *crashed[name], sep="\n  ", file=sys.stderr)
        settled()

    await nc.subscribe(subjects.agent_any("event.turn_state"), cb=on_state)
    await nc.subscribe(subjects.agent_any(subjects.STATS), cb=on_stats)
    await nc.subscribe(f"{subjects.EVENTS_PREFIX}.container_crash.*", cb=on_crash)
    await nc.flush()

    quiet: list[float] = []
    stop = asyncio.Event()
    failed: list[str] = []
    before_storm = asyncio.create_task(operator_latencies(operator, stop, quiet, failed))
    await asyncio.sleep(1.5)  # a window of the broker's latency before the storm (~25 samples)
    stop.set()
    await before_storm
    during: list[float] = []
    stop = asyncio.Event()
    failed_during: list[str] = []
    sampler = asyncio.create_task(operator_latencies(operator, stop, during, failed_during))

    t0 = time.perf_counter()
    commands = [SpawnerCommand(action="spawn", agent=n, approval_id=i + 1) for i, n in enumerate(names)]
    await asyncio.gather(*(spawner.apply(c) for c in commands))
    applied = time.perf_counter() - t0
    try:
        await asyncio.wait_for(all_ready.wait(), 600)
        await asyncio.wait_for(all_turned.wait(), 900)
    except TimeoutError:
        raise BenchFailed(f"{len(ready)} of {agents} harnesses came up, {len(turned)} ended a turn") from None
    stop.set()
    await sampler

    harnesses = processes(is_harness)
    nats_conf = str(server.root).encode()
    services = [broker_pid, *processes(lambda argv: argv[0].endswith(b"nats-server") and nats_conf in b" ".join(argv))]
    before = cpu_seconds(harnesses), cpu_seconds(services)
    await asyncio.sleep(idle_seconds)  # the idle window itself: CPU is counted over it
    after = cpu_seconds(harnesses), cpu_seconds(services)
    rss = [rss_mib(pid) for pid in harnesses]
    return {
        "benchmark": "scale",
        "machine": {"cpus": os.cpu_count(), "load_at_end": os.getloadavg()[0]},
        "agents": agents,
        "crashed_in_the_storm": sorted(crashed),
        "turn_slots": spawner.slots.limit,
        "storm": {
            "all_spawns_applied_s": round(applied, 2),
            "start_to_harness_ready": summary(list(ready.values())),
            "all_ready_s": round(max(ready.values()), 2),
        },
        "wake_turns": {
            "start_to_turn_end": summary(list(turned.values())),
            "all_ended_s": round(max(turned.values()), 2),
        },
        "broker_depths_latency": {
            "before_storm": summary(quiet),
            "during_storm": summary(during),
            "unanswered_during_storm": len(failed_during),
            "unanswered_example": failed_during[:1],
        },
        "idle": {
            "harness_processes": len(harnesses),
            "harness_rss_mib": {"total": round(sum(rss), 1), "per_agent_mean": round(sum(rss) / len(rss), 1)},
            "host_services_rss_mib": round(sum(rss_mib(pid) for pid in services), 1),
            "cpu_share_of_one_core": {
                "harnesses": round((after[0] - before[0]) / idle_seconds, 4),
                "host_services": round((after[1] - before[1]) / idle_seconds, 4),
            },
            "seconds": idle_seconds,
        },
        "targets": {"idle_harness_mib": 40, "start_to_ready_ms": 250, "idle_cpu_share_100_agents": 0.02},
    }


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=30)
    args = parser.parse_args()
    run(main(args.agents, args.idle_seconds), args.out)
