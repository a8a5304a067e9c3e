"""The nixos backend's exact command lines, rendered flake and container conf, against recording stand-ins for
nixos-container, systemctl and journalctl (this machine cannot run NixOS containers); the rendered flake is
evaluated by nix with stand-ins for its one input."""

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hive_spawner.evaluate import run_restricted
from hive_spawner.nixos import ENV_CREDENTIAL, NATS_CREDENTIAL, NixosBackend
from hive_spawner.repos import ConfigRepos, git
from hive_spawner.service import Spawner
from hive_spawner.settings import SpawnerSettings
from hivetest.hive import TestHive
from hivetest.standins import Exits, calls
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import Empty

HIVE_FLAKE = "path:/nix/store/00000000000000000000000000000000-source?dir=deploy/nixos"


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
        flake=HIVE_FLAKE,
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
    assert "hive-harness" not in rendered  # the harness is the container's own (container.nix), not a host path

    uid = backend.uid("alice")
    assert uid % 65536 == 0
    conf = (tmp_path / "conf" / "alice.conf").read_text()
    assert "PRIVATE_NETWORK=0" in conf  # what nixos-container wrote is kept
    assert f"PRIVATE_USERS={uid}\n" in conf  # the range; nixos-container's start script then idmaps the store
    flags = (
        f"--private-users-ownership=chown --bind={backend.state_dir('alice')}:/state "
        f"--bind-ro={backend.policy_dir('alice')}:/run/hive "  # the policy its harness enforces, read-only
        f"--load-credential=harness.env:{backend.credential('alice', ENV_CREDENTIAL)} "
        f"--load-credential=nats.nk:{backend.credential('alice', NATS_CREDENTIAL)}"
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
    assert conf.count("PRIVATE_USERS=") == 1
    assert backend.uid("manager") != backend.uid("alice")


SECRET = "sk-ant-test-0123456789-secret"
SEED = "SU" + "B" * 56


def test_the_secrets_are_0600_credentials_of_roots_outside_the_flake_and_never_on_a_command_line(
    backend: NixosBackend, standins: Path, tmp_path: Path
) -> None:
    env = {"ANTHROPIC_API_KEY": SECRET, "HIVE_AGENT": "alice", "QUOTED": 'a "b" $c `d` \\e'}
    backend.prepare("alice")
    (backend.state_dir("alice") / "nats.nk").write_text(SEED + "\n")  # as the spawner mints it
    backend.start("alice", ["hive-harness"], env)
    flake = tmp_path / "containers" / "alice"
    assert sorted(p.name for p in flake.iterdir()) == ["agent.nix", "flake.nix"]
    assert not [p for p in flake.rglob("*") for s in (SECRET, SEED) if s.encode() in p.read_bytes()]
    conf = (tmp_path / "conf" / "alice.conf").read_text()
    for which in (ENV_CREDENTIAL, NATS_CREDENTIAL):
        secret = backend.credential("alice", which)
        assert not secret.is_relative_to(flake)
        assert not secret.is_relative_to(backend.state_dir("alice"))
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
        assert stat.S_IMODE(secret.parent.stat().st_mode) == 0o700
        assert (secret.stat().st_uid, secret.parent.stat().st_uid) == (os.geteuid(), os.geteuid())  # nspawn reads it
        assert f"--load-credential={which}:{secret}" in conf
    assert backend.credential("alice", ENV_CREDENTIAL).read_text().splitlines() == [
        f'ANTHROPIC_API_KEY="{SECRET}"',
        'HIVE_AGENT="alice"',
        'QUOTED="a \\"b\\" \\$c \\`d\\` \\\\e"',
    ]
    assert backend.credential("alice", NATS_CREDENTIAL).read_text() == SEED
    assert not [c for c in calls(standins) if any(SECRET in a or SEED in a for a in c)]  # never on a command line
    backend.destroy("alice")
    assert not backend.credential("alice", ENV_CREDENTIAL).exists()
    assert not backend.credential("alice", NATS_CREDENTIAL).exists()


def test_a_seed_the_agent_replaced_with_a_link_is_not_followed(
    backend: NixosBackend, standins: Path, tmp_path: Path
) -> None:
    """The agent writes its state dir: a link planted where the seed was must not make the root spawner copy
    another file (a host secret) into the container's credentials."""
    host_secret = tmp_path / "host-secret"
    host_secret.write_text(SEED)
    backend.prepare("alice")
    (backend.state_dir("alice") / "nats.nk").symlink_to(host_secret)
    backend.start("alice", ["hive-harness"], {})
    assert backend.credential("alice", NATS_CREDENTIAL).read_text() == ""


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
    backend = NixosBackend(
        tmp_path / "agents", repos, containers_root=tmp_path / "c", conf_dir=tmp_path / "conf", flake=HIVE_FLAKE
    )
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


def test_the_rendered_flake_has_one_locked_input_and_builds_the_container_from_it(
    backend: NixosBackend, standins: Path, tmp_path: Path
) -> None:
    """The flake, evaluated by nix with a stand-in for the hive's flake: its one input is exactly the locked
    reference (no registry name such as `flake:nixpkgs`), and the system is the container module, the agent's
    agent.nix and its host name."""
    backend.start("alice", ["hive-harness"], {})
    flake = tmp_path / "containers" / "alice"
    expression = """
      let
        flake = import <flake/flake.nix>;
        hyperhive = {
          nixosModules.container = "the container module";
          inputs.nixpkgs.lib.nixosSystem = args: args;
        };
        system = (flake.outputs { self = { }; inherit hyperhive; }).nixosConfigurations.agent;
      in {
        inherit (flake) inputs;
        inherit (system) system;
        modules = map (m: if builtins.isPath m then baseNameOf m else m) system.modules;
      }
    """
    rendered = json.loads(run_restricted(expression, {"flake": flake}))
    assert rendered == {
        "inputs": {"hyperhive": {"url": HIVE_FLAKE}},
        "system": backend.system,
        "modules": ["the container module", "agent.nix", {"networking": {"hostName": "alice"}}],
    }


@pytest.mark.parametrize("flake", [None, "", "flake:hyperhive", "github:example/hyperhive?dir=deploy/nixos"])
def test_a_container_is_not_built_from_an_unlocked_flake(
    tmp_path: Path, standins: Path, flake: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HIVE_NIXOS_FLAKE", raising=False)
    repos = ConfigRepos(tmp_path / "config")
    frozen = repos.freeze("alice", repos.create("alice"), approval_id=1)
    repos.apply("alice", frozen.tag, frozen.sha)
    nixos = NixosBackend(
        tmp_path / "agents", repos, containers_root=tmp_path / "c", conf_dir=tmp_path / "conf", flake=flake
    )
    with pytest.raises(HiveError) as err:
        nixos.start("alice", ["hive-harness"], {})
    assert err.value.code == ErrorCode.UNAVAILABLE
    assert "HIVE_NIXOS_FLAKE" in err.value.message
    assert calls(standins) == []


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
    monkeypatch.setenv("HIVE_NIXOS_FLAKE", HIVE_FLAKE)  # what the NixOS module sets
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


async def test_a_container_started_by_a_spawner_killed_before_announcing_it_is_announced_by_the_next(
    tmp_path: Path, standins: Path, hive: TestHive, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A container outlives its spawner. One killed after starting it and before publishing `agent_started` (which
    wakes the agent through the broker) left the agent running and never woken: the next spawner saw it up and did
    nothing."""
    repos = ConfigRepos(tmp_path / "config")
    frozen = repos.freeze("alice", repos.create("alice"), approval_id=1)
    repos.apply("alice", frozen.tag, frozen.sha)
    monkeypatch.setenv("HIVE_NIXOS_FLAKE", HIVE_FLAKE)
    settings = SpawnerSettings(
        state_dir=tmp_path, backend="nixos", containers_dir=tmp_path / "containers", nixos_conf_dir=tmp_path / "conf"
    )
    nc = await hive.connect(subjects.SPAWNER)
    started = await (await hive.connect("dashboard")).subscribe(subjects.event("agent_started", "alice"))
    killed = Spawner(nc, nc.jetstream(), repos, tmp_path / "agents", settings)

    async def dies_here(*args: object) -> None:
        raise SystemExit("killed")

    monkeypatch.setattr(killed, "_event", dies_here)
    with pytest.raises(SystemExit):
        await killed.start_agent("alice", restarted=False)
    assert killed.backend.running("alice") == {"alice"}

    following = Spawner(nc, nc.jetstream(), repos, tmp_path / "agents", settings)
    try:
        await following.resume()
        event = json.loads((await started.next_msg(timeout=10)).data)
        await following.resume()  # announced once: a later start finds it running and says nothing
        await nc.flush()
    finally:
        following.backend.stop_all()
    assert (event["type"], event["agent"]) == ("agent_started", "alice")
    assert started.pending_msgs == 0
    calls_to_start = [c for c in calls(standins) if c[:2] == ["nixos-container", "start"]]
    assert len(calls_to_start) == 1  # the container was not started twice
