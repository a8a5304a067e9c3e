"""The local backend with real bubblewrap: what an agent can and cannot do, and how its exits are seen."""

import os
from pathlib import Path

import pytest

from hive_spawner.local import LocalBackend
from hive_spawner.repos import ConfigRepos, git
from hivetest.standins import Exits
from hyperhive.wire.errors import HiveError

READY = "echo ready; exec sleep 600"


@pytest.fixture
def agents_root(tmp_path: Path) -> Path:
    """Under pytest's tmp dir, whose parents are 0700: agents' uids could not pass them, and need not."""
    return tmp_path / "agents"


@pytest.fixture
def backend(agents_root: Path, exits: Exits):  # type: ignore[no-untyped-def]
    local = LocalBackend(agents_root, on_exit=exits)
    yield local
    for name in ("alice", "bob"):
        local.stop(name)


def run(backend: LocalBackend, name: str, script: str) -> None:
    backend.start(name, ["/bin/sh", "-c", script], {})
    backend.sandbox(name).wait_for("ready", 30)


def test_an_agent_is_root_inside_and_its_files_belong_to_its_own_uid(backend: LocalBackend) -> None:
    run(backend, "alice", f"id -u > /state/whoami; touch /state/made; {READY}")
    state = backend.state_dir("alice")
    assert (state / "whoami").read_text().strip() == "0"
    uid = backend.uid("alice")
    assert uid > 200_000
    assert (state / "made").stat().st_uid == (uid if os.geteuid() == 0 else os.geteuid())


def test_an_agent_cannot_write_outside_state(backend: LocalBackend, tmp_path: Path) -> None:
    script = "; ".join(
        f"(touch {p} 2>/dev/null && echo wrote {p} || echo refused {p})"
        for p in ("/etc/hive-x", "/usr/hive-x", "/hive-x", "/var/hive-x", "/state/ok")
    )
    run(backend, "alice", f"{script}; {READY}")
    journal = backend.journal("alice", 50)
    assert [line for line in journal if line.startswith("wrote")] == ["wrote /state/ok"]
    for path in ("/etc/hive-x", "/usr/hive-x", "/hive-x", "/var/hive-x"):
        assert not Path(path).exists()


def test_agents_cannot_read_each_others_state(backend: LocalBackend) -> None:
    """By its host path or through another sandbox's /proc/<pid>/root, whether agents have uids of their own (root's
    hive) or share the user's (a user's hive): each sees only its own /state and its own processes."""
    run(backend, "bob", f"echo secret > /state/diary; chmod 600 /state/diary; {READY}")
    bob_diary = backend.state_dir("bob") / "diary"
    routes = [str(bob_diary), f"/proc/{backend.sandbox('bob').pid}/root/state/diary", "/proc/*/root/state/diary"]
    tries = " ".join(f"cat {route} 2>/dev/null | grep -q secret && echo read-it;" for route in routes)
    run(backend, "alice", f"{tries} echo tried; {READY}")
    backend.sandbox("alice").wait_for("tried", 10)
    assert "read-it" not in backend.journal("alice", 20)
    if os.geteuid() == 0:
        assert backend.uid("alice") != backend.uid("bob")


def test_an_agent_runs_below_the_hosts_services_and_cannot_climb_back(backend: LocalBackend) -> None:
    """A storm of agents must leave NATS and the services their CPU: everything in a sandbox runs at the backend's
    niceness, and an agent that asks for more (nice -n -10) gets none."""
    run(backend, "alice", f"echo at=$(nice); echo asked=$(nice -n -10 nice 2>/dev/null); {READY}")
    sandbox = backend.sandbox("alice")
    assert sandbox.wait_for(r"^at=(\S*)$", 10)[1] == "10"  # the backend's default
    assert sandbox.wait_for(r"^asked=(\S*)$", 10)[1] == "10"


def test_an_unexpected_exit_is_reported_and_a_stop_is_not(backend: LocalBackend, exits: Exits) -> None:
    run(backend, "alice", READY)
    run(backend, "bob", READY)
    backend.stop("bob")
    os.kill(backend.sandbox("alice").pid, 9)
    assert exits.happened.wait(10)
    assert [name for name, _ in exits.seen] == ["alice"]
    assert not backend.running("alice")


@pytest.mark.parametrize("name", ["..", "a/b", "ALICE", "twentycharacterslong", "аlice"])
def test_bad_names_never_become_paths(backend: LocalBackend, agents_root: Path, name: str) -> None:
    with pytest.raises(HiveError):
        backend.start(name, ["/bin/true"], {})
    assert not agents_root.exists()


def test_a_runtime_and_state_behind_a_private_home_serve_every_agent(backend: LocalBackend, agents_root: Path) -> None:
    """The state dir lies under 0700 parents (pytest's tmp dir), as a checkout in /root or /home would: the agent,
    its own uid when root runs the hive, still gets its /state."""
    assert any(not p.stat().st_mode & 0o001 for p in agents_root.parents)
    run(backend, "alice", f"touch /state/made; {READY}")
    assert (backend.state_dir("alice") / "made").exists()


def test_the_manager_edits_every_proposed_repo_at_agents_and_others_do_not_see_them(
    agents_root: Path, exits: Exits
) -> None:
    repos = ConfigRepos(agents_root.parent / "config")
    first = repos.create("alice")
    local = LocalBackend(agents_root, on_exit=exits, proposed_root=repos.root / "proposed")
    try:
        edit = (
            "cd /agents/alice && echo '# the manager was here' >> agent.nix && "
            "git -c user.name=manager -c user.email=m@hive.invalid commit -qam 'manager edit' && echo edited"
        )
        run(local, "manager", f"{edit}; {READY}")
        assert "edited" in local.journal("manager", 10)
        head = git(repos.proposed("alice"), "rev-parse", "HEAD")
        assert head != first
        assert repos.freeze("alice", head, approval_id=1).sha == head  # the spawner still reads it

        run(local, "alice", f"test -e /agents && echo sees-agents || echo no-agents; {READY}")
        assert "no-agents" in local.journal("alice", 10)
    finally:
        local.stop_all()


def test_a_new_spawner_ends_the_sandboxes_an_earlier_one_left_running(
    backend: LocalBackend, agents_root: Path, exits: Exits
) -> None:
    """A spawner killed with SIGKILL cannot stop its sandboxes; the next one finds and ends them before it starts
    those agents again, so no agent runs twice."""
    run(backend, "alice", READY)
    orphan = backend.sandbox("alice")
    successor = LocalBackend(agents_root, on_exit=Exits())
    assert successor.reap_orphans() == ["alice"]
    assert exits.happened.wait(10)  # the first backend sees its sandbox end
    assert not orphan.alive()
    assert successor.reap_orphans() == []  # nothing else of ours runs


def test_a_sandbox_stopped_as_it_starts_leaves_nothing_running(
    backend: LocalBackend, agents_root: Path, exits: Exits
) -> None:
    """bwrap ended while it starts can leave its pid-1 child behind (no parent-death signal set yet), which ran on
    beside the next start: a restart right after a start ran the agent twice, about every second time."""
    successor = LocalBackend(agents_root, on_exit=Exits())  # what the next spawner would find
    left = []
    for _ in range(10):
        backend.start("alice", ["/bin/sh", "-c", READY], {})
        backend.stop("alice")
        left += successor.reap_orphans()
    print(f"start then stop at once: 10 times, {len(left)} sandboxes left running")
    assert left == []
    assert exits.seen == []  # none of those stops was taken for a crash
