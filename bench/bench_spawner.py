"""Spawner benchmark: local backend create → agent ready, and restart, next to a bare process start; plus the config
steps of a spawn (template repos, freeze, evaluate, apply). Prints JSON.

Each agent runs twice: as a stand-in (a shell that prints "ready"), and as the real thing, `python -m hive_harness`
(the spawner's default `agent_command`), ready when its first `turn_state` event arrives over NATS. The harness
connects with its own credential and opens its inbox through the broker, so the benchmark starts a nats-server and a
broker (`python -m hive_broker`) of its own. No message is sent: the claude CLI never runs.
    uv run python bench/bench_spawner.py [--n 30]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from benchhive import bench_hive
from nats.aio.client import Client

from hive_spawner.evaluate import evaluate
from hive_spawner.local import LocalBackend
from hive_spawner.repos import ConfigRepos
from hivectl.natsserver import NatsServer
from hyperhive import bus
from hyperhive.files import write_atomic
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects

READY = ["/bin/sh", "-c", "echo ready; exec sleep 600"]
HARNESS = [sys.executable, "-I", "-m", "hive_harness"]  # the spawner's default agent_command
CLAUDE = Path(__file__).parents[1] / "node_modules" / ".bin" / "claude"  # never run: no message is sent


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "n": len(samples),
    }


async def harness_start_restart(nc: Client, backend: LocalBackend, name: str, env: dict[str, str]) -> list[float]:
    """Start `name`'s harness and time it to its first `turn_state` event; then stop + start it, timed the same way."""
    turn_state = await nc.subscribe(subjects.agent_event(name, "turn_state"))
    await nc.flush()
    out = []
    for restart in (False, True):
        t = time.perf_counter()
        if restart:
            backend.stop(name)
        backend.start(name, HARNESS, {**env, "HIVE_AGENT": name})
        try:
            await turn_state.next_msg(timeout=30)
        except Exception as exc:
            raise RuntimeError(f"{name}'s harness did not come up:\n" + "\n".join(backend.journal(name, 20))) from exc
        out.append(time.perf_counter() - t)
    backend.stop(name)
    await turn_state.unsubscribe()
    return out


def main(n: int) -> dict[str, object]:
    runner = asyncio.Runner()  # for the NATS parts; the rest times synchronous calls, as the spawner makes them
    with bench_hive("/var/tmp") as hive, runner:  # noqa: S108 - agents' uids must reach it; /tmp's parents may not
        server, root = hive.server, hive.root
        backend = LocalBackend(root / "agents", on_exit=lambda name, code: None)
        repos = ConfigRepos(root / "config")
        settings = HiveSettings(nats_url=server.url, nats_creds=server.identities.seed_path(subjects.SPAWNER))
        nc = runner.run(bus.connect(settings, name="bench"))
        runner.run(bus.declare(nc.jetstream()))
        hive.service("broker")
        # What the spawner's start_agent gives every harness.
        harness_env = {"HIVE_NATS_URL": server.url, "HIVE_STATE_DIR": "/state", "HIVE_NATS_CREDS": "/state/nats.nk",
                       "HIVE_CLAUDE": json.dumps([str(CLAUDE)])}  # fmt: skip
        try:
            return measure(n, backend=backend, repos=repos, server=server, runner=runner, nc=nc, env=harness_env)
        finally:
            backend.stop_all()
            runner.run(nc.close())


def measure(
    n: int, *, backend: LocalBackend, repos: ConfigRepos, server: NatsServer, runner: asyncio.Runner, nc: Client,
    env: dict[str, str],
) -> dict[str, object]:  # fmt: skip
    config, create, restart, bare, harness_create, harness_restart = ([] for _ in range(6))
    for i in range(n):
        name = f"a{i}"
        t = time.perf_counter()
        first = repos.create(name)
        frozen = repos.freeze(name, first, approval_id=i + 1)
        with repos.checkout(name, frozen.tag, frozen.sha) as files:
            policy = evaluate(files, name)
        repos.apply(name, frozen.tag, frozen.sha)
        config.append(time.perf_counter() - t)

        t = time.perf_counter()
        backend.start(name, READY, {})
        backend._running[name].wait_for("ready", 30)
        create.append(time.perf_counter() - t)

        t = time.perf_counter()
        backend.stop(name)
        backend.start(name, READY, {})
        backend._running[name].wait_for("ready", 30)
        restart.append(time.perf_counter() - t)
        backend.stop(name)

        t = time.perf_counter()
        subprocess.run(["/bin/sh", "-c", "echo ready"], capture_output=True, check=True)
        bare.append(time.perf_counter() - t)

        # The real agent, as the spawner hands it over: its policy and a fresh credential in its state dir.
        state = backend.prepare(name)
        write_atomic(state / "policy.json", policy.model_dump_json(by_alias=True))
        server.identities.add_agent(name, state / "nats.nk")
        backend.prepare(name)  # the new files belong to the agent's uid too
        server.reload()
        started, restarted = runner.run(harness_start_restart(nc, backend, name, env))
        harness_create.append(started)
        harness_restart.append(restarted)
    return {
        "benchmark": "spawner",
        "config_steps_create_freeze_evaluate_apply": summary(config),
        "local_create_to_ready": summary(create),
        "local_restart_to_ready": summary(restart),
        "local_create_to_harness_ready": summary(harness_create),
        "local_restart_to_harness_ready": summary(harness_restart),
        "bare_process_start": summary(bare),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    print(json.dumps(main(parser.parse_args().n), indent=2))
