"""The nixos backend's exact command lines and rendered files, against recording stand-ins for nixos-container,
systemctl and journalctl (this machine cannot run NixOS containers)."""

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hive_spawner.nixos import ENV_IN_CONTAINER, NixosBackend, exec_start, nix_string
from hive_spawner.repos import ConfigRepos, git
from hive_spawner.service import Spawner
from hive_spawner.settings import SpawnerSettings
from hivetest.hive import TestHive
from hivetest.standins import Exits, calls
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import Empty


@pytest.fixture
def backend(tmp_path: Path, exits: Exits) -> Iterator[NixosBackend]:
    repos = ConfigRepos(tmp_path / "config")
    for name in ("alice", "manager"):
        first = repos.create(name)
        frozen = repos.freeze(name, first, approval_id=1)
        repos.apply(name, frozen.tag, frozen.sha)
    nixos = NixosBackend(
        tmp_path / "agents",
        repos,
        containers_root=tmp_path / "containers",
        conf_dir=tmp_path / "conf",
        cpu_quota="150%",
        memory_max="2G",
        on_exit=exits,
    )
    yield nixos
    nixos.stop_all()


def test_starting_an_agent_creates_limits_and_starts_its_container(
    backend: NixosBackend, standins: Path, tmp_path: Path
) -> None:
    backend.start("alice", ["/run/current-system/sw/bin/hive-harness"], {"HIVE_AGENT": "alice"})
    flake = tmp_path / "containers" / "alice"
    assert calls(standins) == [
        ["nixos-container", "create", "alice", "--flake", f"{flake}#agent"],
        ["systemctl", "set-property", "--runtime", "container@alice.service", "CPUQuota=150%", "MemoryMax=2G"],
        ["nixos-container", "start", "alice"],
    ]
    applied = backend.repos.applied("alice")
    assert (flake / "agent.nix").read_text().strip() == git(applied, "show", "HEAD:agent.nix").strip()
    rendered = (flake / "flake.nix").read_text()
    assert git(applied, "rev-parse", "HEAD") in rendered
    assert 'ExecStart = "\\"/run/current-system/sw/bin/hive-harness\\""' in rendered
    assert 'EnvironmentFile = "/run/hyperhive/harness.env"' in rendered

    uid = backend.uid("alice")
    assert uid % 65536 == 0
    conf = (tmp_path / "conf" / "alice.conf").read_text()
    assert "PRIVATE_NETWORK=0" in conf  # what nixos-container wrote is kept
    env = backend.env_file("alice")
    flags = (
        f"--private-users={uid}:65536 --bind={backend.state_dir('alice')}:/state --bind-ro={env}:{ENV_IN_CONTAINER} "
        f"--bind-ro={backend.policy_dir('alice')}:/run/hive"  # the policy its harness enforces, read-only
    )
    assert f'EXTRA_NSPAWN_FLAGS="{flags}"' in conf
    assert ":/agents" not in conf
    if os.geteuid() == 0:
        assert backend.state_dir("alice").stat().st_uid == uid
    assert backend.running("alice")


def test_a_second_start_updates_and_the_manager_gets_the_proposed_repos(
    backend: NixosBackend, standins: Path, tmp_path: Path
) -> None:
    backend.start("manager", ["hive-harness"], {})
    backend.stop("manager")
    assert not backend.running("manager")
    backend.start("manager", ["hive-harness"], {})
    verbs = [c[1] for c in calls(standins) if c[0] == "nixos-container"]
    assert verbs == ["create", "start", "stop", "update", "start"]
    conf = (tmp_path / "conf" / "manager.conf").read_text()
    assert f"--bind={tmp_path / 'config' / 'proposed'}:/agents" in conf
    assert conf.count("EXTRA_NSPAWN_FLAGS=") == 1
    assert backend.uid("manager") != backend.uid("alice")


SECRET = "sk-ant-test-0123456789-secret"


def test_the_environment_goes_to_a_0600_file_outside_the_flake_and_the_container_reads_it(
    backend: NixosBackend, standins: Path, tmp_path: Path
) -> None:
    env = {"ANTHROPIC_API_KEY": SECRET, "HIVE_AGENT": "alice", "QUOTED": 'a "b" $c `d` \\e'}
    backend.start("alice", ["hive-harness"], env)
    flake = tmp_path / "containers" / "alice"
    assert sorted(p.name for p in flake.iterdir()) == ["agent.nix", "flake.nix"]
    assert not [p for p in flake.rglob("*") if SECRET.encode() in p.read_bytes()]
    secret = backend.env_file("alice")
    assert not secret.is_relative_to(flake)
    assert not secret.is_relative_to(backend.state_dir("alice"))
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
    if os.geteuid() == 0:
        assert (secret.stat().st_uid, secret.parent.stat().st_uid) == (backend.uid("alice"), 0)
    assert secret.read_text().splitlines() == [
        f'ANTHROPIC_API_KEY="{SECRET}"',
        'HIVE_AGENT="alice"',
        'QUOTED="a \\"b\\" \\$c \\`d\\` \\\\e"',
    ]
    assert f"--bind-ro={secret}:/run/hyperhive/harness.env" in (tmp_path / "conf" / "alice.conf").read_text()
    assert not [c for c in calls(standins) if any(SECRET in a for a in c)]  # never on a command line
    backend.destroy("alice")
    assert not secret.exists()


@pytest.mark.parametrize("env", [{"BAD KEY": "x"}, {"K": "two\nlines"}, {"K": "nul\0"}])
def test_an_environment_a_file_cannot_carry_is_refused(
    backend: NixosBackend, standins: Path, env: dict[str, str]
) -> None:
    with pytest.raises(HiveError) as err:
        backend.start("alice", ["hive-harness"], env)
    assert err.value.code == ErrorCode.INVALID_REQUEST
    assert ["nixos-container", "create"] not in [c[:2] for c in calls(standins)]


def test_journal_and_destroy(backend: NixosBackend, standins: Path) -> None:
    backend.start("alice", ["hive-harness"], {})
    assert backend.journal("alice", 20) == ["harness line 1", "harness line 2"]
    backend.destroy("alice")
    assert ["journalctl", "-M", "alice", "-u", "hyperhive-harness", "-n", "20", "-o", "cat", "--no-pager"] in calls(
        standins
    )
    assert calls(standins)[-1] == ["nixos-container", "destroy", "alice"]
    assert not backend.running("alice")


def test_an_agent_without_applied_config_gets_no_container(tmp_path: Path, standins: Path) -> None:
    repos = ConfigRepos(tmp_path / "config")
    repos.create("bob")  # a draft
    backend = NixosBackend(tmp_path / "agents", repos, containers_root=tmp_path / "c", conf_dir=tmp_path / "conf")
    with pytest.raises(Exception, match="no applied config"):
        backend.start("bob", ["hive-harness"], {})
    assert calls(standins) == []


def test_a_failed_container_unit_is_reported_and_a_clean_stop_is_not(
    backend: NixosBackend, standins: Path, tmp_path: Path, exits: Exits
) -> None:
    backend.start("alice", ["hive-harness"], {})
    journal = tmp_path / "journal"
    with journal.open("a") as out:
        out.write("Stopped Container 'alice'.\n")
        out.write("container@alice.service: Main process exited, code=exited, status=0/SUCCESS\n")
        out.write("container@alice.service: Main process exited, code=killed, status=9/KILL\n")
    assert exits.happened.wait(10)
    assert exits.seen == [("alice", 9)]


def test_exec_start_keeps_every_argument_whole_through_nix_and_systemd() -> None:
    """An argument with a space, quotes, `$`, `%` or `${` reaches systemd as one word, unexpanded (it was the
    command joined with spaces)."""
    argv = ["/bin/harness", "two words", 'a "quoted" one', "$HOME", "100%", "${x}", "back\\slash"]
    line = exec_start(argv)
    evaluated = subprocess.run(
        ["nix-instantiate", "--store", "dummy://", "--eval", "--json", "--expr", f'"{nix_string(line)}"'],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert json.loads(evaluated) == line  # Nix gives back exactly the ExecStart line
    assert line.count('" "') == len(argv) - 1  # one quoted word per argument
    assert "$$HOME" in line  # systemd would expand it otherwise
    assert "100%%" in line


def test_which_of_several_agents_run_is_one_systemctl_call(backend: NixosBackend, standins: Path) -> None:
    """`nixos-container list` and `status` per agent were two processes per agent listed; the conf files say which
    containers exist, and one `systemctl show` reads every unit's ActiveState (what `status` reads)."""
    backend.start("alice", ["hive-harness"], {})
    backend.start("manager", ["hive-harness"], {})
    backend.stop("manager")
    before = len(calls(standins))
    assert backend.running("alice", "manager", "bob") == {"alice"}  # bob has no container
    assert calls(standins)[before:] == [
        ["systemctl", "show", "--property=Id,ActiveState", "container@alice.service", "container@manager.service"]
    ]


async def test_listing_agents_costs_one_process_whatever_their_number(
    tmp_path: Path, standins: Path, hive: TestHive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`agents` asked git for each agent's applied commit and nixos-container twice per agent; now it reads files
    and asks systemd once."""
    repos = ConfigRepos(tmp_path / "config")
    names = [f"agent{i}" for i in range(5)]
    for name in names:
        frozen = repos.freeze(name, repos.create(name), approval_id=1)
        repos.apply(name, frozen.tag, frozen.sha)
    nc = await hive.connect(subjects.SPAWNER)
    settings = SpawnerSettings(
        state_dir=tmp_path, backend="nixos", containers_dir=tmp_path / "containers", nixos_conf_dir=tmp_path / "conf"
    )
    spawner = Spawner(nc, nc.jetstream(), repos, tmp_path / "agents", settings)
    try:
        for name in names[:3]:
            spawner.backend.start(name, ["hive-harness"], {})
        started: list[list[str]] = []

        class Counted(subprocess.Popen):  # type: ignore[type-arg]
            def __init__(self, args: list[str], *rest: Any, **options: Any) -> None:
                started.append(list(args))
                super().__init__(args, *rest, **options)

        monkeypatch.setattr(subprocess, "Popen", Counted)
        listed = await spawner.agents("", Empty())
    finally:
        spawner.backend.stop_all()
    print(f"agents listed: {len(names)}, processes: {len(started)}")
    assert [(a.name, a.state) for a in listed.agents] == [(n, "running") for n in names[:3]] + [
        (n, "stopped") for n in names[3:]
    ]
    assert [argv[:2] for argv in started] == [["systemctl", "show"]]
