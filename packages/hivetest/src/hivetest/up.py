"""`hivectl up` and `hivectl` as an operator runs them, as processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hyperhive.process import Child

HIVECTL = [sys.executable, "-m", "hivectl"]


def start_up(state: Path, nats_port: int, pg_port: int) -> Child:
    argv = [
        *HIVECTL,
        "up",
        "--state-dir",
        str(state),
        "--nats-port",
        str(nats_port),
        "--postgres-port",
        str(pg_port),
    ]
    child = Child("up", argv).start()
    child.wait_for(r"hyperhive is up", 120)
    return child


def hivectl(state: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HIVE_STATE_DIR": str(state)}
    env.pop("HIVE_NATS_URL", None)
    return subprocess.run([*HIVECTL, *args], env=env, capture_output=True, text=True, timeout=60, check=False)
