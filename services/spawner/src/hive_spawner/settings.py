"""Spawner settings (`HIVE_` environment variables)."""

import os
import sys
from pathlib import Path
from typing import Literal

from pydantic import Field

from hyperhive.settings import HiveSettings


class SpawnerSettings(HiveSettings):
    host: str = Field("local", pattern=r"^[a-z][a-z0-9-]{0,30}$", description="Which work queue this spawner serves.")
    nats_auth_dir: Path | None = Field(
        None, description="The nats-server's identities folder (auth.conf, seeds/); agents get credentials there."
    )
    backend: Literal["local", "nixos"] = Field(
        "local", description="`local`: bubblewrap (development, tests, hivectl up); `nixos`: nixos-container."
    )
    nix_lib: Path | None = Field(
        None,
        description="The `lib` folder of nixpkgs, whose module system evaluates every agent.nix against the agent "
        "options (the NixOS module sets it; unset, `nixpkgs=` on NIX_PATH).",
    )
    default_model: str | None = Field(
        None, description="The model of agents whose agent.nix names none (unset: the agent options' default)."
    )
    containers_dir: Path | None = Field(None, description="nixos: where container flakes are rendered.")
    nixos_flake: str | None = Field(
        None,
        description="nixos: the hyperhive flake containers are built from, by a locked reference "
        "(path:/nix/store/…?dir=deploy/nixos; the NixOS module sets it).",
    )
    nixos_conf_dir: Path = Field(Path("/etc/nixos-containers"), description="nixos: the containers' conf files.")
    cpu_quota: str = Field("200%", description="nixos: CPUQuota of each agent's container.")
    memory_max: str = Field("4G", description="nixos: MemoryMax of each agent's container.")
    agent_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="local: how far below the host's services every agent's sandbox runs on the CPU, as a nice "
        "value an agent cannot lower (nixos: the NixOS module weighs machine.slice, where containers run, instead).",
    )
    agent_command: list[str] = Field(
        # -I: the harness starts in /state, which the agent writes; without it a planted asyncio.py would run in it.
        default_factory=lambda: [sys.executable, "-I", "-m", "hive_harness"],
        description="What runs inside an agent's sandbox (JSON list): the harness, from this hive's own Python.",
    )
    bootstrap_manager: bool = Field(
        False, description="Create and start the manager from the template at the first start (`hivectl up` does)."
    )
    credential_file: Path | None = Field(
        None,
        description="The hive's Anthropic credential (`hivectl login`, a 0600 file): handed to every agent at its "
        "start and by `hive.spawner.credential`. Unset, agents have only what `agent_env` gives the CLI.",
    )
    turn_slots: int = Field(
        default_factory=lambda: max(2, 2 * (os.cpu_count() or 1)),
        ge=1,
        description="How many agents of this host run the claude CLI at once (~200 MiB each); the rest wait.",
    )
    agent_env: dict[str, str] = Field(
        default_factory=dict,
        description="Extra environment of every harness (JSON): `HIVE_CLAUDE`, `HIVE_CLAUDE_ENV`, … Never logged.",
    )
