"""`hivectl up` as an operator runs it: a real process tree, started, inspected, stopped, started again."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path

import asyncpg
import pytest

from hivectl.layout import Layout, installed_services
from hivectl.postgres import Postgres
from hivetest.up import HIVECTL, hivectl, start_up
from hyperhive import bus
from hyperhive.process import free_port
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def server_pids(layout: Layout) -> list[int]:
    nats_pid = int((layout.nats_root / "nats.pid").read_text())
    pg_pid = int((layout.postgres_data / "postmaster.pid").read_text().splitlines()[0])
    return [nats_pid, pg_pid]


async def write_and_read_back(layout: Layout, pg_port: int, *, write: bool) -> tuple[int, int]:
    conn = await asyncpg.connect(Postgres(layout.postgres_data, port=pg_port).url("hyperhive"))
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS kept (n int)")
        if write:
            await conn.execute("INSERT INTO kept VALUES (1)")
        rows = await conn.fetchval("SELECT count(*) FROM kept")
    finally:
        await conn.close()
    nats_url = json.loads(layout.hive_file.read_text())["nats_url"]
    settings = HiveSettings(nats_url=nats_url, nats_creds=layout.seed("broker"))
    async with bus.connected(settings, name="test") as nc:
        js = nc.jetstream()
        if write:
            await nc.publish(subjects.event("test_marker", "system"), b"{}")
            await nc.flush()
        marker = subjects.event("test_marker", "system")
        info = await js.stream_info(subjects.EVENTS_STREAM, subjects_filter=marker)
    return rows, (info.state.subjects or {}).get(marker, 0)


def test_up_starts_the_hive_lists_services_stops_cleanly_and_keeps_data(tmp_path: Path) -> None:
    state = tmp_path / "hive"
    layout = Layout(state)
    nats_port, pg_port = free_port(), free_port()

    up = start_up(state, nats_port, pg_port)
    try:
        pids = server_pids(layout)
        status = hivectl(state, "--json", "status")
        assert status.returncode == 0, status.stderr
        listed = {s["name"] for s in json.loads(status.stdout)["services"]}
        assert listed == set(installed_services())
        assert asyncio.run(write_and_read_back(layout, pg_port, write=True)) == (1, 1)
        with pytest.raises(ConnectionRefusedError):  # only its unix socket, which no sandbox sees
            socket.create_connection(("127.0.0.1", pg_port), timeout=5).close()

        sent = hivectl(state, "send", "manager", "hello from the operator")
        assert sent.returncode == 0, sent.stderr
        # The manager's wake-up message and this one, each pending until the manager's harness (below the services
        # on the CPU, so maybe not yet up) takes it into a turn, which with no credential waits as needs-login.
        assert json.loads(hivectl(state, "--json", "depths").stdout)["depths"]["manager"] in (0, 1, 2)
        inbox = json.loads(hivectl(state, "--json", "inbox", "manager").stdout)
        from_operator = [e["message"]["body"] for e in inbox["entries"] if e["message"]["from"] == "operator"]
        assert from_operator == ["hello from the operator"]
        assert json.loads(hivectl(state, "--json", "approvals").stdout)["approvals"] == []
        # A hive comes with its manager, which runs even from pytest's private tmp dir.
        assert [a["name"] for a in json.loads(hivectl(state, "--json", "agents").stdout)["agents"]] == ["manager"]
        unknown = hivectl(state, "logs", "ghost")
        assert unknown.returncode == 1
        assert "not_found" in unknown.stderr
        missing = hivectl(state, "approve", "999")
        assert missing.returncode == 1
        assert "not_found" in missing.stderr
        # The servers' chatter is in their log files, not on the terminal; the terminal has the hive's own events.
        assert not [line for line in up.lines if line.startswith(("[nats]", "[postgres]"))], up.lines
        assert any("[broker]" in line and "event=ready" in line for line in up.lines), up.lines
        nats_log = json.loads(hivectl(state, "logs", "--service", "nats", "--lines", "500", "--json").stdout)
        assert any("Server is ready" in line for line in nats_log["lines"])
        assert any(
            "ready" in line
            for line in json.loads(hivectl(state, "--json", "logs", "--service", "broker").stdout)["lines"]
        )
        bogus = hivectl(state, "logs", "--service", "nginx")
        assert (bogus.returncode, bogus.stderr.count("\n")) == (2, 1), bogus.stderr
        # The dashboard is up, its address and (this first time) its password said once on the terminal.
        [where] = [line.split()[1] for line in up.lines if line.strip().startswith("dashboard ")]
        [first] = [line.split()[1] for line in up.lines if line.strip().startswith("password ")]
        with urllib.request.urlopen(f"{where}/login", timeout=10) as page:  # noqa: S310 - our own loopback page
            assert page.status == 200
        assert first not in "\n".join(hivectl(state, "logs", "--service", "dashboard", "--lines", "500").stdout)
        changed = hivectl(state, "passwd", "--file", "-", stdin="a new password, long enough\n")
        assert changed.returncode == 0, changed.stderr
        short = hivectl(state, "passwd", "--file", "-", stdin="short\n")
        assert (short.returncode, short.stderr.count("\n")) == (2, 1), short.stderr
    finally:
        up.stop(signal.SIGINT)
    assert up.returncode == 0, "\n".join(up.lines[-20:])
    assert not any(pid_alive(p) for p in pids), "a server outlived hivectl up"

    up = start_up(state, nats_port, pg_port)
    try:
        assert asyncio.run(write_and_read_back(layout, pg_port, write=False)) == (1, 1)
        assert any(line.strip().startswith("dashboard ") for line in up.lines)
        assert not any(line.strip().startswith("password ") for line in up.lines)  # it was changed: never again
    finally:
        up.stop(signal.SIGTERM)
    assert up.returncode == 0


def test_up_names_the_busy_port_and_the_flag(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [
                *HIVECTL,
                "up",
                "--state-dir",
                str(tmp_path),
                "--nats-port",
                str(port),
                "--postgres-port",
                str(free_port()),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert result.returncode == 1
    assert f"Port {port} on 127.0.0.1 is already in use" in result.stderr
    assert "--nats-port" in result.stderr


def test_status_without_a_hive_says_what_is_wrong(tmp_path: Path) -> None:
    env = {**os.environ, "HIVE_STATE_DIR": str(tmp_path), "HIVE_NATS_URL": f"nats://127.0.0.1:{free_port()}"}
    result = subprocess.run([*HIVECTL, "status"], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 1
    assert "Cannot connect to NATS" in result.stderr
