"""`hivectl up` supervises like systemd would: a service, nats-server or PostgreSQL killed with SIGKILL is started
again after a short back-off and said so on the terminal, and the hive goes on working — it no longer stops whole
because one process died."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from hivectl.layout import Layout
from hivetest.up import hivectl, start_up
from hyperhive.process import Child, free_port


def child_pid(up: Child, module: str) -> int:
    """The pid of the service `hivectl up` runs as `python -m <module>`."""
    for pid in Path(f"/proc/{up.pid}/task/{up.pid}/children").read_text().split():
        if module in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[-2:][0].decode():
            return int(pid)
    raise AssertionError(f"{module} is not a child of hivectl up")


def kill_and_see_it_back(up: Child, pid: int, name: str) -> None:
    mark = up.count
    os.kill(pid, signal.SIGKILL)
    up.wait_for(rf"hivectl: {name} exited with code .*starting it again", 30, after=mark)
    up.wait_for(rf"hivectl: {name} is running again", 90, after=mark)


def works(state: Path, *command: str) -> bool:
    """The command succeeds within a few tries (each a fresh hivectl: the services may still be reconnecting)."""
    return any(hivectl(state, *command).returncode == 0 for _ in range(20))


def test_up_starts_what_died_again_and_the_hive_goes_on(tmp_path: Path) -> None:
    state = tmp_path / "hive"
    layout = Layout(state)
    up = start_up(state, free_port(), free_port())
    try:
        kill_and_see_it_back(up, child_pid(up, "hive_broker"), "broker")
        assert works(state, "send", "manager", "after the broker died")

        kill_and_see_it_back(up, int((layout.nats_root / "nats.pid").read_text()), "nats")
        assert works(state, "send", "manager", "after nats-server died")

        postgres_pid = int((layout.postgres_data / "postmaster.pid").read_text().splitlines()[0])
        kill_and_see_it_back(up, postgres_pid, "postgres")
        assert works(state, "--json", "approvals")

        inbox = json.loads(hivectl(state, "--json", "inbox", "manager").stdout)
        bodies = [e["message"]["body"] for e in inbox["entries"]]
        assert bodies[-2:] == ["after the broker died", "after nats-server died"]
        assert up.alive()
    finally:
        up.stop(signal.SIGINT)
    assert up.returncode == 0, "\n".join(up.lines[-20:])
