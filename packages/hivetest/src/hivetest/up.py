"""`hivectl up` and `hivectl` as an operator runs them, as processes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hyperhive.inbox import Inbox
from hyperhive.process import Child, free_port

HIVECTL = [sys.executable, "-m", "hivectl"]


def start_up(state: Path, nats_port: int, pg_port: int, env: dict[str, str] | None = None) -> Child:
    argv = [
        *HIVECTL,
        "up",
        "--state-dir",
        str(state),
        "--nats-port",
        str(nats_port),
        "--postgres-port",
        str(pg_port),
        "--dashboard-port",
        str(free_port()),
    ]
    child = Child("up", argv, env={**os.environ, **env} if env else None).start()
    child.wait_for(r"hyperhive is up", 120)
    return child


def hivectl(state: Path, *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HIVE_STATE_DIR": str(state)}
    env.pop("HIVE_NATS_URL", None)
    return subprocess.run(
        [*HIVECTL, *args], env=env, input=stdin, capture_output=True, text=True, timeout=60, check=False
    )


async def read_until(inbox: Inbox, text: str) -> list[str]:
    """The messages of `inbox`, as they are pushed, acked, until one contains `text`."""
    bodies: list[str] = []
    while not any(text in b for b in bodies):
        messages, _ = await inbox.take(wait=60)
        assert messages, f"the inbox got only {bodies}"
        bodies += [m.body for m in messages]
        await inbox.ack([m.token for m in messages])
    return bodies
