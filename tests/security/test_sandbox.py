"""What a prompt-injected agent can see and change from inside its local sandbox (real bubblewrap, the same runtime
binds the spawner gives a harness): only the system directories, the hive's runtime and its own /state; its
policy is readable and cannot be changed by any means."""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterable
from pathlib import Path

import pytest

from hive_spawner.local import LocalBackend, runtime
from hivetest.claude import CLAUDE
from hivetest.standins import Exits
from hyperhive.files import write_secret

from .conftest import Attacks

CHECKOUT = Path(__file__).resolve().parents[2]


@pytest.fixture
def exits() -> Exits:
    return Exits()


@pytest.fixture
def hive_root(spawner_state: Path) -> Path:
    """A hive's state dir as `hivectl up` lays it out, with secrets where they really are."""
    write_secret(spawner_state / "nats" / "seeds" / "operator.nk", b"SUOPERATORSEED")
    (spawner_state / "nats" / "auth.conf").write_text("authorization {}")
    write_secret(spawner_state / "postgres.password", b"pg-secret")
    return spawner_state


def probe(paths: dict[str, str], changes: dict[str, str], folders: Iterable[str] = ()) -> str:
    """A shell script that prints `SEEN <label>` for each path it can read, `DID <label>` for each change that
    worked and `IN <folder> <entry>` for what each of `folders` holds, then `ready`."""
    lines = [f"[ -e {shlex.quote(p)} ] && echo {shlex.quote(f'SEEN {label}')}" for label, p in paths.items()]
    lines += [f"( {cmd} ) >/dev/null 2>&1 && echo {shlex.quote(f'DID {label}')}" for label, cmd in changes.items()]
    lines += [f"ls -A {shlex.quote(f)} 2>/dev/null | sed {shlex.quote(f's|^|IN {f} |')}" for f in folders]
    return "\n".join([*lines, "echo ready", "exec sleep 600"])


def beyond_runtime(said: list[str], folder: str, command: list[str], env: dict[str, str]) -> set[str]:
    """What the sandbox showed in `folder` beyond the parents of the runtime's binds (a checkout in /root or /home
    brings its own path there, and nothing beside it)."""
    allowed = {p.parts[2] for p in runtime(command, env) if len(p.parts) > 2 and p.parts[1] == folder.strip("/")}
    return {line.split(" ", 2)[2] for line in said if line.startswith(f"IN {folder} ")} - allowed


def test_an_agent_sees_only_the_system_its_runtime_and_its_own_state(
    hive_root: Path, exits: Exits, attacks: Attacks, tmp_path: Path
) -> None:
    backend = LocalBackend(hive_root / "agents", on_exit=exits)
    for name in ("alice", "bob"):
        backend.prepare(name)
        backend.hand_over_policy(name, json.dumps({"agent": name}))
    (backend.state_dir("bob") / "diary.md").write_text("bob's secret")
    (tmp_path / "host-tmp-marker").write_text("x")
    hidden = {
        "the checkout's README": CHECKOUT / "README.md",
        "the checkout's .git": CHECKOUT / ".git",
        "the checkout's tests": CHECKOUT / "tests",
        "another agent's state": backend.state_dir("bob") / "diary.md",
        "another agent's policy": backend.policy_dir("bob") / "policy.json",
        "the uid registry": hive_root / "agents" / ".uids.json",
        "the NATS auth.conf": hive_root / "nats" / "auth.conf",
        "the operator's NATS seed": hive_root / "nats" / "seeds" / "operator.nk",
        "the PostgreSQL password": hive_root / "postgres.password",
        "the host's /tmp": tmp_path / "host-tmp-marker",
        "the hive's state root": hive_root,
    }
    folders = ("/home", "/root", "/var", "/srv", "/mnt", "/opt", "/work")
    policy = "/run/hive/policy.json"
    changes = {
        "wrote its policy": f"echo '{{}}' > {policy}",
        "removed its policy": f"rm -f {policy}",
        "renamed its policy": f"mv {policy} /run/hive/old",
        "made its policy writable": f"chmod 666 {policy}",
        "added a file beside its policy": "touch /run/hive/extra",
        "mounted over its policy": f"echo '{{}}' > /state/fake && mount --bind /state/fake {policy}",
        "remounted it writable": "mount -o remount,rw /run/hive",
        "made a user namespace of its own": "unshare -r true",
        "wrote into the hive's runtime": f"touch {CHECKOUT / 'packages' / 'hyperhive' / 'src' / 'x'}",
        "wrote into the system": "touch /usr/x",
    }
    command = ["/bin/sh", "-c", probe({k: str(v) for k, v in hidden.items()}, changes, folders)]
    env = {"HIVE_CLAUDE": json.dumps([str(CLAUDE)])}
    backend.start("alice", command, env)
    try:
        backend.sandbox("alice").wait_for("ready", 30)
        said = backend.journal("alice", 500)
    finally:
        backend.stop("alice")
    for label in hidden:
        attacks.record(f"alice read {label}", succeeded=f"SEEN {label}" in said)
    for folder in folders:
        seen = beyond_runtime(said, folder, command, env)
        attacks.record(f"alice listed {folder}: {sorted(seen)}", succeeded=bool(seen))
    for label in changes:
        attacks.record(f"alice {label}", succeeded=f"DID {label}" in said)
    attacks.record(
        "alice's policy changed",
        succeeded=json.loads((backend.policy_dir("alice") / "policy.json").read_text()) != {"agent": "alice"},
    )
    attacks.none_succeeded()


def test_the_harness_runtime_is_there_and_nothing_else_of_the_checkout(hive_root: Path, exits: Exits) -> None:
    """The other half: what the harness needs is visible (else the test above could pass on an empty sandbox)."""
    backend = LocalBackend(hive_root / "agents", on_exit=exits)
    backend.prepare("alice")
    backend.hand_over_policy("alice", '{"agent":"alice"}')
    script = probe(
        {
            "policy": "/run/hive/policy.json",
            "claude": str(CLAUDE),
            "hyperhive": str(CHECKOUT / "packages" / "hyperhive" / "src" / "hyperhive"),
        },
        {},
    )
    backend.start("alice", ["/bin/sh", "-c", script], {"HIVE_CLAUDE": json.dumps([str(CLAUDE)])})
    try:
        backend.sandbox("alice").wait_for("ready", 30)
        said = backend.journal("alice", 50)
    finally:
        backend.stop("alice")
    assert {"SEEN policy", "SEEN claude", "SEEN hyperhive"} <= set(said)
