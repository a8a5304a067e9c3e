"""Spawner benchmark: an approved `spawn` command applied by the spawner → its agent ready, and a restart → ready,
next to a bare process start. Prints JSON.

The spawner's own code does every step (`hive_spawner.service.Spawner`): `apply` of a spawn command makes the
agent's repos from the template, freezes and evaluates its `agent.nix`, applies it, hands the policy over, mints the
agent's NATS credential, publishes its policy and starts its sandbox; `act(…, "restart")` stops and starts it. Two
spawners share one state dir and differ only in `agent_command`: one runs the real agent, `python -m hive_harness`
(the default), ready at its first `turn_state` event on NATS; the other a stand-in shell that writes "ready" into a
FIFO in its state dir, which shows the sandbox's own cost. The harness opens its inbox through the broker, so the
benchmark starts a nats-server and a broker (`python -m hive_broker`) of its own. No message is sent: the claude
CLI never runs.
    uv run python bench/bench_spawner.py [--n 30] [--out FILE]   (as root: agents run as their own uids)
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchhive import BenchFailed, arguments, bench_hive, run, summary
from nats.aio.client import Client

from hive_spawner.repos import ConfigRepos
from hive_spawner.service import Spawner
from hive_spawner.settings import SpawnerSettings
from hyperhive import bus, streams
from hyperhive.wire import subjects
from hyperhive.wire.models import SpawnerCommand

STAND_IN = ["/bin/sh", "-c", "echo ready > /state/ready; exec sleep 600"]
CLAUDE = Path(__file__).parents[1] / "node_modules" / ".bin" / "claude"  # never run: no message is sent
P50_MAX = (50, 100), 2


Start = Callable[[], Awaitable[object]]


async def stand_in_ready(spawner: Spawner, name: str, start: Start) -> float:
    """The time from `start` (which starts the stand-in) to its "ready" in its FIFO."""
    fifo = spawner.backend.state_dir(name) / "ready"
    loop = asyncio.get_running_loop()
    fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # opened first: the stand-in's write waits for a reader
    written: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not written.done():
            written.set_result(None)

    loop.add_reader(fd, readable)
    try:
        t = time.perf_counter()
        await start()
        await asyncio.wait_for(written, 30)
        return time.perf_counter() - t
    except TimeoutError:
        lines = "\n".join(spawner.backend.journal(name, 20))
        raise BenchFailed(f"stand-in {name} never said ready:\n{lines}") from None
    finally:
        loop.remove_reader(fd)
        os.close(fd)


async def harness_ready(nc: Client, spawner: Spawner, name: str, start: Start) -> float:
    """The time from `start` (which starts the harness) to its first `turn_state` event."""
    turn_state = await nc.subscribe(subjects.agent_event(name, "turn_state"))
    await nc.flush()
    try:
        t = time.perf_counter()
        await start()
        await turn_state.next_msg(timeout=30)
        return time.perf_counter() - t
    except TimeoutError:
        lines = "\n".join(spawner.backend.journal(name, 20))
        raise BenchFailed(f"{name}'s harness did not come up:\n{lines}") from None
    finally:
        await turn_state.unsubscribe()


def bare_start() -> float:
    """`sh -c 'echo ready'` from Python, waited for: a process start without a sandbox or a spawner."""
    t = time.perf_counter()
    subprocess.run(["/bin/sh", "-c", "echo ready"], capture_output=True, check=True)
    return time.perf_counter() - t


async def main(n: int) -> dict[str, object]:
    with bench_hive("/var/tmp") as hive:  # noqa: S108 - agents' uids must reach it; /tmp's parents may not
        server = hive.server
        spawner_creds = server.identities.seed_path(subjects.SPAWNER)
        agent_env = {"HIVE_CLAUDE": json.dumps([str(CLAUDE)])}
        base = SpawnerSettings(nats_url=server.url, nats_creds=spawner_creds, state_dir=hive.root / "spawner",
                               nats_auth_dir=server.root, agent_env=agent_env)  # fmt: skip
        nc = await bus.connect(base, name="bench")
        js = nc.jetstream()
        await streams.declare(js)
        hive.service("broker")

        def spawner(settings: SpawnerSettings) -> Spawner:  # as `python -m hive_spawner` makes its own
            return Spawner(nc, js, ConfigRepos(settings.state_dir / "config"), settings.state_dir / "agents", settings)

        harnesses = spawner(base)
        stand_ins = spawner(base.model_copy(update={"agent_command": STAND_IN}))
        try:
            return await measure(n, nc, harnesses, stand_ins)
        finally:
            for each in (harnesses, stand_ins):
                each.backend.stop_all()
            await nc.close()


async def measure(n: int, nc: Client, harnesses: Spawner, stand_ins: Spawner) -> dict[str, object]:
    stand_in_spawn, stand_in_restart, harness_spawn, harness_restart, bare = ([] for _ in range(5))
    applied: dict[Spawner, list[float]] = {stand_ins: [], harnesses: []}  # until `apply` returned, per spawner

    def spawn(spawner: Spawner, name: str, approval_id: int) -> Start:
        async def apply() -> None:
            t = time.perf_counter()
            await spawner.apply(SpawnerCommand(action="spawn", agent=name, approval_id=approval_id))
            applied[spawner].append(time.perf_counter() - t)

        return apply

    def restart(spawner: Spawner, name: str) -> Start:
        return lambda: spawner.act(name, "restart")

    for i in range(n):
        name = f"s{i}"
        fifo = stand_ins.backend.state_dir(name) / "ready"
        fifo.parent.mkdir(parents=True, mode=0o700)  # the spawner takes the folder as it is and gives it to the agent
        os.mkfifo(fifo, 0o600)
        stand_in_spawn.append(await stand_in_ready(stand_ins, name, spawn(stand_ins, name, 2 * i + 1)))
        stand_in_restart.append(await stand_in_ready(stand_ins, name, restart(stand_ins, name)))
        await stand_ins.act(name, "stop")

        bare.append(bare_start())

        name = f"h{i}"
        harness_spawn.append(await harness_ready(nc, harnesses, name, spawn(harnesses, name, 2 * i + 2)))
        harness_restart.append(await harness_ready(nc, harnesses, name, restart(harnesses, name)))
        await harnesses.act(name, "stop")
    return {
        "benchmark": "spawner",
        "spawn_applied_stand_in": summary(applied[stand_ins], *P50_MAX),
        "spawn_applied_harness": summary(applied[harnesses], *P50_MAX),
        "spawn_to_harness_ready": summary(harness_spawn, *P50_MAX),
        "restart_to_harness_ready": summary(harness_restart, *P50_MAX),
        "spawn_to_stand_in_ready": summary(stand_in_spawn, *P50_MAX),
        "restart_to_stand_in_ready": summary(stand_in_restart, *P50_MAX),
        "bare_process_start": summary(bare, *P50_MAX),
    }


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--n", type=int, default=30)
    args = parser.parse_args()
    run(main(args.n), args.out)
