"""Spawner benchmark: local backend create → agent ready, and restart, next to a bare process start; plus the config
steps of a spawn (template repos, freeze, evaluate, apply). Prints JSON.
    uv run python bench/bench_spawner.py [--n 30]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from hive_spawner.evaluate import evaluate
from hive_spawner.local import LocalBackend
from hive_spawner.repos import ConfigRepos

READY = ["/bin/sh", "-c", "echo ready; exec sleep 600"]


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(ordered[len(ordered) // 2] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
        "n": len(samples),
    }


def main(n: int) -> dict[str, object]:
    root = Path(tempfile.mkdtemp(prefix="hive-bench-", dir="/var/tmp"))
    root.chmod(0o711)
    backend = LocalBackend(root / "agents", on_exit=lambda name, code: None)
    repos = ConfigRepos(root / "config")
    try:
        config, create, restart, bare = [], [], [], []
        for i in range(n):
            name = f"a{i}"
            t = time.perf_counter()
            first = repos.create(name)
            frozen = repos.freeze(name, first, approval_id=i + 1)
            with repos.checkout(name, frozen.tag, frozen.sha) as files:
                evaluate(files, name)
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
        return {
            "benchmark": "spawner",
            "config_steps_create_freeze_evaluate_apply": summary(config),
            "local_create_to_ready": summary(create),
            "local_restart_to_ready": summary(restart),
            "bare_process_start": summary(bare),
        }
    finally:
        backend.stop_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=30)
    print(json.dumps(main(parser.parse_args().n), indent=2))
