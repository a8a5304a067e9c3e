"""The nixos backend, for production: one `nixos-container` per agent, built from a flake the spawner renders from the
agent's applied config. `PrivateUsers` maps container root to an unprivileged host uid range of the agent's own
(its state dir is chowned to it), `/state` is bound in (and, for the manager, every agent's proposed repo at
`/agents`), and CPU and memory are limited on the container's systemd unit.

Only the spawner runs `nixos-container`, `systemctl` and `journalctl`, and always with argument lists.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hive_spawner.repos import ConfigRepos, git
from hive_spawner.uids import AgentDirs
from hyperhive.identity import write_atomic
from hyperhive.process import Child
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.names import MANAGER

UID_BASE = 1 << 20  # ranges of 65536 from here, clear of ordinary users
# What systemd logs when a container's unit fails (a clean stop logs neither).
FAILURE = re.compile(r"Failed with result|Main process exited, code=\w+, status=(?P<status>[1-9]\d*|[A-Z]+)")
FLAKE = """\
# Rendered by the hyperhive spawner from {name}'s applied config ({sha}); do not edit, it is rendered again.
{{
  inputs.nixpkgs.url = "flake:nixpkgs";
  outputs = {{ self, nixpkgs }}: {{
    nixosConfigurations.agent = nixpkgs.lib.nixosSystem {{
      system = "{system}";
      modules = [
        ./agent.nix
        ({{ lib, pkgs, ... }}: {{
          options.hyperhive = lib.mkOption {{ type = lib.types.attrs; default = {{ }}; }};
          config = {{
            boot.isContainer = true;
            networking.hostName = "{name}";
            system.stateVersion = "24.11";
            systemd.services.hyperhive-harness = {{
              description = "hyperhive harness of {name}";
              wantedBy = [ "multi-user.target" ];
              after = [ "network.target" ];
              environment = builtins.fromJSON (builtins.readFile ./harness-env.json);
              serviceConfig = {{ ExecStart = "{command}"; Restart = "on-failure"; WorkingDirectory = "/state"; }};
            }};
          }};
        }})
      ];
    }};
  }};
}}
"""


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
        system: str = "x86_64-linux",
        on_exit: Callable[[str, int | None], None] | None = None,
    ) -> None:
        super().__init__(state_root, repos.root / "proposed", base=UID_BASE, step=1 << 16)
        self.repos = repos
        self.containers_root = containers_root
        self.conf_dir = conf_dir
        self.cpu_quota = cpu_quota
        self.memory_max = memory_max
        self.system = system
        self._on_exit = on_exit
        self._watchers: dict[str, Child] = {}
        self._stopping: set[str] = set()

    def render(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> Path:
        """The agent's container flake, from its applied agent.nix."""
        applied = self.repos.applied(name)
        sha = git(applied, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
        if not sha:
            raise HiveError(ErrorCode.CONFLICT, f"Agent {name!r} has no applied config to build a container from.")
        flake = self.containers_root / name
        flake.mkdir(parents=True, exist_ok=True)
        (flake / "agent.nix").write_text(git(applied, "show", f"{sha}:agent.nix") + "\n")
        write_atomic(flake / "harness-env.json", json.dumps(dict(env), indent=2, sort_keys=True))
        rendered = FLAKE.format(name=name, sha=sha, system=self.system, command=" ".join(command))
        write_atomic(flake / "flake.nix", rendered)
        return flake

    def exists(self, name: str) -> bool:
        return name in run("nixos-container", "list").split()

    def nspawn_flags(self, name: str) -> str:
        flags = [f"--private-users={self.uid(name)}:65536", f"--bind={self.state_dir(name)}:/state"]
        if name == MANAGER:
            flags.append(f"--bind={self.proposed_root}:/agents")
        return " ".join(flags)

    def start(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> None:
        self.prepare(name)
        flake = self.render(name, command, env)
        verb = "update" if self.exists(name) else "create"
        run("nixos-container", verb, name, "--flake", f"{flake}#agent")
        self._set_flags(name)
        run("systemctl", "set-property", "--runtime", f"container@{name}.service",
            f"CPUQuota={self.cpu_quota}", f"MemoryMax={self.memory_max}")  # fmt: skip
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
        """Bind mounts and the user-namespace range go into the container's conf, which nixos-container reads."""
        conf = self.conf_dir / f"{name}.conf"
        lines = [
            ln
            for ln in (conf.read_text().splitlines() if conf.exists() else [])
            if not ln.startswith("EXTRA_NSPAWN_FLAGS=")
        ]
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

    def running(self, name: str) -> bool:
        return self.exists(name) and run("nixos-container", "status", name).strip() == "up"

    def journal(self, name: str, lines: int) -> list[str]:
        out = run("journalctl", "-M", name, "-u", "hyperhive-harness", "-n", str(lines), "-o", "cat", "--no-pager")
        return out.splitlines()

    def destroy(self, name: str) -> None:
        self._stopping.add(name)
        if (watcher := self._watchers.pop(name, None)) is not None:
            watcher.stop()
        if self.exists(name):
            run("nixos-container", "destroy", name)
