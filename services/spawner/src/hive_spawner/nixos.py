"""The nixos backend, for production: one `nixos-container` per agent, built from a flake the spawner renders from the
agent's applied config. `PrivateUsers` maps container root to an unprivileged host uid range of the agent's own
(its state dir is chowned to it), `/state` is bound in (and, for the manager, every agent's proposed repo at
`/agents`), and CPU and memory are limited on the container's systemd unit.

The harness's environment holds secrets (the spawner's `agent_env`: an API key), and everything in a flake's directory
is copied into the world-readable Nix store. So the flake holds none of it: the environment is written to
`<state root>/.credentials/<name>.env` (0600, owned by the container's root uid, outside every flake and state dir),
bound read-only into the container and read by the harness unit with `EnvironmentFile=`.

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
from hyperhive.files import write_atomic, write_secret
from hyperhive.process import Child
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.names import MANAGER

ENV_IN_CONTAINER = "/run/hyperhive/harness.env"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
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
              serviceConfig = {{
                ExecStart = "{command}";
                EnvironmentFile = "{env_file}";
                Restart = "on-failure";
                WorkingDirectory = "/state";
              }};
            }};
          }};
        }})
      ];
    }};
  }};
}}
"""


def exec_start(argv: Sequence[str]) -> str:
    """`argv` as a systemd ExecStart line: each word double-quoted with `\\` and `"` escaped, `%` and `$` doubled
    (systemd expands specifiers and variables), so an argument with a space stays one argument."""
    quoted = [
        '"' + a.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$") + '"' for a in argv
    ]
    return " ".join(quoted)


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

    def render(self, name: str, command: Sequence[str]) -> Path:
        """The agent's container flake, from its applied agent.nix: nothing secret goes in (see `write_env`)."""
        sha = self.repos.applied_head(name)
        if not sha:
            raise HiveError(ErrorCode.CONFLICT, f"Agent {name!r} has no applied config to build a container from.")
        with self.repos.checkout_applied(name) as files:
            agent_nix = (files / "agent.nix").read_text(errors="replace")
        flake = self.containers_root / name
        flake.mkdir(parents=True, exist_ok=True)
        (flake / "harness-env.json").unlink(missing_ok=True)  # where renders before 0009 put the environment
        write_atomic(flake / "agent.nix", agent_nix + "\n")
        rendered = FLAKE.format(
            name=name, sha=sha, system=self.system, command=nix_string(exec_start(command)), env_file=ENV_IN_CONTAINER
        )
        write_atomic(flake / "flake.nix", rendered)
        return flake

    def env_file(self, name: str) -> Path:
        return self.state_root / ".credentials" / f"{self.state_dir(name).name}.env"

    def write_env(self, name: str, env: Mapping[str, str]) -> Path:
        """The harness's environment as a systemd EnvironmentFile, 0600 and owned by the container's root uid (its
        PID 1 reads it), in a root-only directory that no flake reads and no sandbox sees."""
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
        path = self.env_file(name)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)
        write_secret(path, ("\n".join(lines) + "\n").encode())
        if os.geteuid() == 0:
            os.chown(path, self.uid(name), self.uid(name))
        return path

    def reap_orphans(self) -> list[str]:
        """Containers are systemd units, not children of the spawner: a spawner's death leaves none behind."""
        return []

    def exists(self, name: str) -> bool:
        """What `nixos-container list` prints: the containers with a conf file (no process to ask)."""
        return (self.conf_dir / f"{name}.conf").exists()

    def nspawn_flags(self, name: str) -> str:
        flags = [
            f"--private-users={self.uid(name)}:65536",
            f"--bind={self.state_dir(name)}:/state",
            f"--bind-ro={self.env_file(name)}:{ENV_IN_CONTAINER}",
            f"--bind-ro={self.policy_folder(name)}:{POLICY_IN_SANDBOX}",
        ]
        if name == MANAGER:
            flags.append(f"--bind={self.proposed_root}:/agents")
        return " ".join(flags)

    def start(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> None:
        self.prepare(name)
        self.write_env(name, env)
        flake = self.render(name, command)
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
        self.env_file(name).unlink(missing_ok=True)
