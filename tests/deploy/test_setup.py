"""`hyperhive-setup.service`'s program, run for real: the identities and nats.conf it writes into the state dir make
a real nats-server start with JetStream and admit exactly the hive's principals, and the operator's first password
is set once, never over one the operator chose later."""

import getpass
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import nats
import pytest
from argon2 import PasswordHasher

from hive_dashboard import password
from hive_spawner.nixos_setup import main
from hivectl.layout import operator_settings
from hivectl.natsserver import nats_server_binary
from hyperhive import bus
from hyperhive.identity import mint_seed
from hyperhive.process import Child
from hyperhive.settings import HiveSettings

FIRST = "the operator's first password"


def run_setup(tmp_path: Path, *extra: str) -> None:
    args = ["--nats-dir", str(tmp_path / "nats"), "--host", "127.0.0.1", "--port", "-1"]
    main([*args, "--pid-file", str(tmp_path / "nats.pid"), *extra])


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    run_setup(tmp_path)
    child = Child("nats", [nats_server_binary(), "-c", str(tmp_path / "nats" / "nats.conf")]).start()
    try:
        listening = child.wait_for(r"Listening for client connections on (\S+):(\d+)", 30)
        child.wait_for(r"Server is ready", 30)
        yield f"nats://127.0.0.1:{listening.group(2)}"
    finally:
        child.stop()


async def test_the_setup_makes_a_nats_server_with_jetstream_that_admits_only_the_hive(
    server: str, tmp_path: Path
) -> None:
    seeds = tmp_path / "nats" / "seeds"
    assert sorted(p.name for p in seeds.iterdir()) == [
        f"{n}.nk" for n in sorted(("approver", "broker", "dashboard", "operator", "spawner", "system"))
    ]
    assert stat.S_IMODE(seeds.stat().st_mode) == 0o700
    assert {stat.S_IMODE(p.stat().st_mode) for p in seeds.iterdir()} == {0o600}
    config = (tmp_path / "nats" / "nats.conf").read_text()
    assert 'include "auth.conf"' in config  # relative: the spawner rewrites auth.conf beside it
    assert not [s for s in seeds.iterdir() if s.read_text().strip() in config]

    broker = await nats.connect(server, nkeys_seed=str(seeds / "broker.nk"), allow_reconnect=False)
    try:
        assert (await broker.jetstream().account_info()).limits is not None
    finally:
        await broker.close()
    stranger = tmp_path / "stranger.nk"
    mint_seed(stranger)
    errors: list[Exception] = []

    async def record(exc: Exception) -> None:
        errors.append(exc)

    settings = HiveSettings(nats_url=server, nats_creds=stranger)
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await bus.connect(settings, name="stranger", allow_reconnect=False, error_cb=record)


def test_hivectl_on_the_host_finds_the_hive_and_the_operators_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What `hivectl up` leaves for a local hive, so root's `hivectl agents` needs no variable on a NixOS host."""
    run_setup(tmp_path, "--state-dir", str(tmp_path), "--nats-url", "nats://127.0.0.1:4222")
    for variable in ("HIVE_NATS_URL", "HIVE_NATS_CREDS", "HIVE_STATE_DIR"):
        monkeypatch.delenv(variable, raising=False)
    settings = operator_settings(tmp_path)
    assert (settings.nats_url, settings.nats_creds) == ("nats://127.0.0.1:4222", tmp_path / "nats/seeds/operator.nk")


def test_a_second_run_keeps_every_seed(tmp_path: Path) -> None:
    run_setup(tmp_path)
    seeds = {p.name: p.read_bytes() for p in (tmp_path / "nats" / "seeds").iterdir()}
    run_setup(tmp_path)
    assert {p.name: p.read_bytes() for p in (tmp_path / "nats" / "seeds").iterdir()} == seeds


def test_the_first_password_is_set_once_and_a_later_one_stays(tmp_path: Path) -> None:
    secret = tmp_path / "operator-password"
    secret.write_text(FIRST + "\n")
    me = ["--state-dir", str(tmp_path), "--operator-password-file", str(secret), "--dashboard-user", getpass.getuser()]
    run_setup(tmp_path, *me)
    hashed = password.hash_file(tmp_path)
    assert PasswordHasher().verify(hashed.read_text(), FIRST)
    assert hashed.stat().st_uid == os.geteuid()
    assert stat.S_IMODE(hashed.stat().st_mode) == 0o600
    password.set_password(tmp_path, "one the operator chose later")
    run_setup(tmp_path, *me)
    assert PasswordHasher().verify(hashed.read_text(), "one the operator chose later")


def test_it_runs_as_the_unit_runs_it(tmp_path: Path) -> None:
    """`python -I -m hive_spawner.nixos_setup …`, as the module's ExecStart says."""
    args = ["--nats-dir", str(tmp_path / "nats"), "--host", "10.0.0.1", "--port", "4222", "--pid-file", "/run/n.pid"]
    done = subprocess.run(
        [sys.executable, "-I", "-m", "hive_spawner.nixos_setup", *args], capture_output=True, text=True, check=True
    )
    assert "event=identities config=" in done.stderr
    assert 'listen: "10.0.0.1:4222"' in (tmp_path / "nats" / "nats.conf").read_text()
