"""A local user (or an agent) hunting the spawner's secrets: the API key in `agent_env` must not be in a container's
flake dir, in what Nix would copy into the world-readable store (the flake dir's NAR), on a command line, or in any
file whose mode lets another principal read it."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from hive_spawner.nixos import ENV_CREDENTIAL, NixosBackend
from hive_spawner.repos import ConfigRepos
from hivetest.standins import calls
from hyperhive.files import write_atomic, write_secret

from .conftest import Attacks

SECRET = "sk-ant-planted-4f1c9e2b7d"


def test_a_secret_in_agent_env_reaches_no_flake_store_path_argv_or_readable_file(
    tmp_path: Path, standins: Path, attacks: Attacks
) -> None:
    repos = ConfigRepos(tmp_path / "config")
    first = repos.create("alice")
    frozen = repos.freeze("alice", first, approval_id=1)
    repos.apply("alice", frozen.tag, frozen.sha)
    backend = NixosBackend(
        tmp_path / "agents",
        repos,
        containers_root=tmp_path / "containers",
        conf_dir=tmp_path / "conf",
        flake="path:/nix/store/00000000000000000000000000000000-source?dir=deploy/nixos",
    )
    try:
        backend.start("alice", ["hive-harness"], {"ANTHROPIC_API_KEY": SECRET, "HIVE_AGENT": "alice"})
        backend.start("alice", ["hive-harness"], {"ANTHROPIC_API_KEY": SECRET, "HIVE_AGENT": "alice"})  # an update
    finally:
        backend.stop_all()
    flake = tmp_path / "containers" / "alice"

    holding = [
        p for p in tmp_path.rglob("*") if p.is_file() and not p.is_symlink() and SECRET.encode() in p.read_bytes()
    ]
    attacks.record("the secret in the flake dir", succeeded=any(p.is_relative_to(flake) for p in holding))
    nar = subprocess.run(["nix-store", "--dump", str(flake)], capture_output=True, check=True).stdout
    attacks.record("the secret in what Nix copies into the store", succeeded=SECRET.encode() in nar)
    readable = [p for p in holding if stat.S_IMODE(p.stat().st_mode) & 0o077]
    attacks.record("the secret in a file group or others can read", succeeded=bool(readable))
    attacks.record(
        "the secret in a file but the one credentials file", succeeded=holding != [backend.env_file("alice")]
    )
    if os.geteuid() == 0:
        owner = backend.credential("alice", ENV_CREDENTIAL).stat().st_uid
        attacks.record("the credentials file owned by anyone but root (nspawn reads it)", succeeded=owner != 0)
    attacks.record("the secret on a command line", succeeded=any(SECRET in " ".join(c) for c in calls(standins)))
    attacks.none_succeeded()


def test_a_secret_written_into_an_agents_folder_never_goes_through_a_link_it_planted(
    tmp_path: Path, attacks: Attacks
) -> None:
    """The spawner, as root, writes an agent's credential into the agent's own state dir, where the agent may have
    left links at the names it would use."""
    state, outside = tmp_path / "state", tmp_path / "outside"
    state.mkdir()
    outside.write_text("root's file\n")
    (state / ".nats.nk.tmp").symlink_to(outside)  # the temporary name the writers used to take
    (state / "nats.nk").symlink_to(outside)
    write_secret(state / "nats.nk", b"SUAGENTSEED\n")
    write_atomic(state / "turn.json", "[]")
    attacks.record("a write went through a planted link", succeeded=outside.read_text() != "root's file\n")
    seed = state / "nats.nk"
    attacks.record("the secret is a link", succeeded=seed.is_symlink() or seed.read_bytes() != b"SUAGENTSEED\n")
    attacks.record("the secret is readable by others", succeeded=seed.stat().st_mode & 0o077 != 0)
    attacks.none_succeeded()
