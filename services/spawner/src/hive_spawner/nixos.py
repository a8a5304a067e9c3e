"""The nixos backend, for production: one `nixos-container` per agent, built from a flake the spawner renders from the
agent's applied config. `PrivateUsers` maps container root to an unprivileged host uid range of the agent's own
(its state dir is chowned to it), `/state` is bound in (and, for the manager, every agent's proposed repo at
`/agents`), and CPU and memory are limited on the container's systemd unit.

The rendered flake's one input is the hive's own flake by a locked reference (`HIVE_NIXOS_FLAKE`, which the NixOS
module sets to its store path): the container's nixpkgs, the agent options and the harness (a systemd service of
the container's own closure, deploy/nixos/container.nix) all come from it, and no registry is asked at spawn time.

Everything in a flake's directory is copied into the world-readable Nix store, so the flake holds no secret. The
harness's environment (the spawner's `agent_env`: an API key) and the agent's NATS seed are systemd credentials:
written to `<state root>/.credentials/<name>.env` and `.nk` (0600, root's, outside every flake and state dir), handed
to the container's PID 1 by nspawn's `--load-credential`, and imported by the harness unit with `LoadCredential=`.

Only the spawner runs `nixos-container`, `systemctl` and `journalctl`, and always with argument lists.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hive_spawner.dirs import POLICY_IN_SANDBOX, AgentDirs
from hive_spawner.repos import ConfigRepos
from hyperhive.files import read_untrusted, write_atomic, write_secret
from hyperhive.process import Child
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.names import MANAGER

ENV_CREDENTIAL = "harness.env"
NATS_CREDENTIAL = "nats.nk"
NKEY_SEED = re.compile(r"SU[A-Z2-7]{56}")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
UID_BASE = 1 << 20  # ranges of 65536 from here, clear of ordinary users
# What systemd logs when a container's unit fails (a clean stop logs neither).
FAILURE = re.compile(r"Failed with result|Main process exited, code=\w+, status=(?P<status>[1-9]\d*|[A-Z]+)")
NO_FLAKE = (
    "The nixos backend needs HIVE_NIXOS_FLAKE: the hyperhive flake that containers are built from, by a locked "
    "reference (path:/nix/store/…; the NixOS module sets it)."
)
FLAKE = """\
# Rendered by the hyperhive spawner from {name}'s applied config ({sha}); do not edit, it is rendered again.
# Its one input is the hive's flake, by a locked reference: nixpkgs, the agent options and the harness come from it.
{{
  inputs.hyperhive.url = "{flake}";
  outputs = {{ self, hyperhive }}: {{
    nixosConfigurations.agent = hyperhive.inputs.nixpkgs.lib.nixosSystem {{
      system = "{system}";
      modules = [
        hyperhive.nixosModules.container
        ./agent.nix
        {{ networking.hostName = "{name}"; }}
      ];
    }};
  }};
}}
"""


def nix_string(text: str) -> str:
    """`text` inside a Nix double-quoted string: `\\`, `"` and `${` escaped."""
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${")


def run(*argv: str) -> str:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HiveError(ErrorCode.UNAVAILABLE, f"{' '.join(argv[:3])} failed: {done.stderr.strip()[:500]}")
    return done.stdout


class NixosBackend(AgentDirs):
    def __init__(
        self,
        state_root: Path,
        repos: ConfigRepos,
        *,
        containers_root: Path,
        conf_dir: Path = Path("/etc/nixos-containers"),
        cpu_quota: str = "200%",
        memory_max: str = "4G",
        system: str = f"{os.uname().machine}-linux",
        flake: str | None = None,
        on_exit: Callable[[str, int | None], None] | None = None,
    ) -> None:
        super().__init__(state_root, repos.root / "proposed", base=UID_BASE, step=1 << 16)
        self.repos = repos
        # Until backend.py passes `settings.nixos_flake`, the same variable is read here.
        self.flake = flake if flake is not None else os.environ.get("HIVE_NIXOS_FLAKE")
        self.containers_root = containers_root
        self.conf_dir = conf_dir
        self.cpu_quota = cpu_quota
        self.memory_max = memory_max
        self.system = system
        self._on_exit = on_exit
        self._watchers: dict[str, Child] = {}
        self._stopping: set[str] = set()

    def render(self, name: str) -> Path:
        """The agent's container flake, from its applied agent.nix: nothing secret goes in (see `hand_over`)."""
        flake_ref = self.flake_ref()
        sha = self.repos.applied_head(name)
        if not sha:
            raise HiveError(ErrorCode.CONFLICT, f"Agent {name!r} has no applied config to build a container from.")
        with self.repos.checkout_applied(name) as files:
            agent_nix = (files / "agent.nix").read_text(errors="replace")
        flake = self.containers_root / name
        flake.mkdir(parents=True, exist_ok=True)
        (flake / "harness-env.json").unlink(missing_ok=True)  # where renders before 0009 put the environment
        write_atomic(flake / "agent.nix", agent_nix + "\n")
        rendered = FLAKE.format(name=name, sha=sha, system=nix_string(self.system), flake=nix_string(flake_ref))
        write_atomic(flake / "flake.nix", rendered)
        return flake

    def flake_ref(self) -> str:
        """The hive's flake, which must be locked: a path (a store path, on a NixOS host) or a pinned narHash, never
        a registry name that would be looked up, and fetched, at spawn time."""
        if not self.flake:
            raise HiveError(ErrorCode.UNAVAILABLE, NO_FLAKE)
        if not (self.flake.startswith("path:/") or "narHash=" in self.flake):
            raise HiveError(
                ErrorCode.UNAVAILABLE, f"HIVE_NIXOS_FLAKE={self.flake!r} is not a locked reference. {NO_FLAKE}"
            )
        return self.flake

    def credential(self, name: str, which: str) -> Path:
        """Where the credential `which` (`ENV_CREDENTIAL`, `NATS_CREDENTIAL`) of `name`'s container is kept."""
        suffix = {ENV_CREDENTIAL: ".env", NATS_CREDENTIAL: ".nk"}[which]
        return self.state_root / ".credentials" / f"{self.state_dir(name).name}{suffix}"

    def env_file(self, name: str) -> Path:
        return self.credential(name, ENV_CREDENTIAL)

    def hand_over(self, name: str, env: Mapping[str, str]) -> None:
        """The harness's environment, as lines a shell reads back exactly (the harness's start script sources it),
        and the agent's NATS seed, as 0600 files of root's in a root-only folder that no flake reads and no sandbox
        sees: nspawn reads them as root and hands them to the container's PID 1 as credentials.

        The seed is copied out of the agent's state dir, which the agent can write: read without following a link,
        and only if it is a seed; without one (an open server) the credential is empty."""
        lines = []
        for key, value in sorted(env.items()):
            if not ENV_NAME.fullmatch(key) or any(c in value for c in "\n\r\0"):
                raise HiveError(
                    ErrorCode.INVALID_REQUEST,
                    f"The environment variable {key!r} cannot be handed to a "
                    "container: a name of letters, digits and _, a value on one line.",
                )
            quoted = "".join("\\" + c if c in '\\"`$' else c for c in value)
            lines.append(f'{key}="{quoted}"')
        seed = read_untrusted(self.state_dir(name) / NATS_CREDENTIAL, NKEY_SEED) or ""
        folder = self.state_root / ".credentials"
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        folder.chmod(0o700)
        write_secret(self.credential(name, ENV_CREDENTIAL), ("\n".join(lines) + "\n").encode())
        write_secret(self.credential(name, NATS_CREDENTIAL), seed.encode())

    def reap_orphans(self) -> list[str]:
        """Containers are systemd units, not children of the spawner: a spawner's death leaves none behind."""
        return []

    def exists(self, name: str) -> bool:
        """What `nixos-container list` prints: the containers with a conf file (no process to ask)."""
        return (self.conf_dir / f"{name}.conf").exists()

    def nspawn_flags(self, name: str) -> str:
        """What nixos-container's start script appends to systemd-nspawn. PRIVATE_USERS (in the conf) gives the
        range; an explicit range alone would leave the container's tree owned by host root, so nspawn is told to
        chown it to the range."""
        flags = [
            "--private-users-ownership=chown",
            f"--bind={self.state_dir(name)}:/state",
            f"--bind-ro={self.policy_folder(name)}:{POLICY_IN_SANDBOX}",
            f"--load-credential={ENV_CREDENTIAL}:{self.credential(name, ENV_CREDENTIAL)}",
            f"--load-credential={NATS_CREDENTIAL}:{self.credential(name, NATS_CREDENTIAL)}",
        ]
        if name == MANAGER:
            flags.append(f"--bind={self.proposed_root}:/agents")
        return " ".join(flags)

    def start(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> None:
        """`command` is the local backend's: a container runs the harness of its own closure (container.nix)."""
        self.prepare(name)
        self.hand_over(name, env)
        flake = self.render(name)
        verb = "update" if self.exists(name) else "create"
        run("nixos-container", verb, name, "--flake", f"{flake}#agent")
        self._set_flags(name)
        run(
            "systemctl",
            "set-property",
            "--runtime",
            f"container@{name}.service",
            f"CPUQuota={self.cpu_quota}",
            f"MemoryMax={self.memory_max}",
        )
        run("nixos-container", "start", name)
        self._stopping.discard(name)
        self._watch(name)

    def _watch(self, name: str) -> None:
        """Crash watch: follow the container unit's journal (pushed by journald, not polled) for a failure."""
        if name in self._watchers and self._watchers[name].alive():
            return
        unit = f"container@{name}.service"
        self._watchers[name] = Child(
            f"watch-{name}",
            ["journalctl", "-f", "-n", "0", "-o", "cat", "-u", unit],
            keep=100,
            on_line=lambda line: self._saw(name, line),
        ).start()

    def _saw(self, name: str, line: str) -> None:
        failed = FAILURE.search(line)
        if failed and name not in self._stopping and self._on_exit is not None:
            self._stopping.add(name)  # one report per failure
            code = failed.group("status")
            self._on_exit(name, int(code) if code and code.isdigit() else None)

    def _set_flags(self, name: str) -> None:
        """The user-namespace range, bind mounts and credentials go into the container's conf, which
        nixos-container's start script reads: PRIVATE_USERS=<first uid> also makes it bind the store idmapped."""
        conf = self.conf_dir / f"{name}.conf"
        ours = ("EXTRA_NSPAWN_FLAGS=", "PRIVATE_USERS=")
        lines = [ln for ln in (conf.read_text().splitlines() if conf.exists() else []) if not ln.startswith(ours)]
        lines.append(f"PRIVATE_USERS={self.uid(name)}")
        lines.append(f'EXTRA_NSPAWN_FLAGS="{self.nspawn_flags(name)}"')
        write_atomic(conf, "\n".join(lines) + "\n")

    def stop(self, name: str) -> None:
        self._stopping.add(name)
        if self.exists(name):
            run("nixos-container", "stop", name)

    def stop_all(self) -> None:
        """Containers outlive the spawner; only the journal watchers stop."""
        for watcher in self._watchers.values():
            watcher.stop()

    def running(self, *names: str) -> set[str]:
        """Which of `names` are up, by what `nixos-container status` reads (the unit's ActiveState), for all of them
        in one `systemctl show`: listing N agents costs one process, not two per agent."""
        units = {f"container@{name}.service": name for name in names if self.exists(name)}
        if not units:
            return set()
        shown = run("systemctl", "show", "--property=Id,ActiveState", *units)
        up = set()
        for block in shown.split("\n\n"):
            unit = dict(line.partition("=")[::2] for line in block.splitlines())
            if unit.get("ActiveState") == "active" and unit.get("Id") in units:
                up.add(units[unit["Id"]])
        return up

    def journal(self, name: str, lines: int) -> list[str]:
        out = run("journalctl", "-M", name, "-u", "hyperhive-harness", "-n", str(lines), "-o", "cat", "--no-pager")
        return out.splitlines()

    def destroy(self, name: str) -> None:
        self._stopping.add(name)
        if (watcher := self._watchers.pop(name, None)) is not None:
            watcher.stop()
        if self.exists(name):
            run("nixos-container", "destroy", name)
        for which in (ENV_CREDENTIAL, NATS_CREDENTIAL):
            self.credential(name, which).unlink(missing_ok=True)
