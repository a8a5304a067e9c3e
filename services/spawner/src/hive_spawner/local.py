"""The local backend: each agent under bubblewrap, for development, tests and `hivectl up`.

An agent runs in its own user, pid, ipc and uts namespaces as an unprivileged host uid of its own that is root
inside. The host's system directories are visible read-only, the root is a read-only tmpfs, and only its state dir
is writable, at `/state`. It shares the host's network, so it reaches NATS on loopback.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hive_spawner.uids import AgentDirs
from hyperhive.process import Child
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.names import MANAGER

UID_BASE = 200_000
HIDDEN = frozenset({"proc", "dev", "sys", "tmp", "run", "root", "home", "state", "lost+found", "mnt", "media"})


def host_view() -> list[str]:
    """bwrap arguments that show the host's system directories read-only, and the Python this hive runs on (which
    may live under a hidden directory, such as a pyenv in /root)."""
    args: list[str] = []
    for entry in sorted(os.listdir("/")):
        path = f"/{entry}"
        if entry in HIDDEN:
            continue
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for extra in {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}:
        # Only when an agent's uid can reach it; a Python under /root is left for the harness issue to solve.
        if extra.parts[1:2] and extra.parts[1] in HIDDEN and all(p.stat().st_mode & 0o001 for p in extra.parents):
            args += ["--ro-bind", str(extra), str(extra)]
    return args


class LocalBackend(AgentDirs):
    def __init__(
        self, state_root: Path, *, on_exit: Callable[[str, int | None], None], proposed_root: Path | None = None
    ) -> None:
        super().__init__(state_root, proposed_root, base=UID_BASE, step=1)
        self._on_exit = on_exit
        self._running: dict[str, Child] = {}
        self._stopping: set[str] = set()

    def argv(self, name: str, command: Sequence[str]) -> list[str]:
        bwrap = shutil.which("bwrap")
        if bwrap is None:
            raise HiveError(ErrorCode.UNAVAILABLE, "bubblewrap is not installed (Debian: bubblewrap).")
        return [
            bwrap, "--unshare-user", "--uid", "0", "--gid", "0", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--hostname", name, "--die-with-parent", "--new-session",
            *host_view(),
            "--dir", "/state", "--bind", str(self.state_dir(name)), "/state",
            *(["--bind", str(self.proposed_root), "/agents"] if name == MANAGER and self.proposed_root else []),
            "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev",  # noqa: S108 - a fresh tmpfs of its own
            "--remount-ro", "/", "--chdir", "/state",
            "--", *command,
        ]  # fmt: skip

    @staticmethod
    def _reachable(path: Path, what: str, fix: str) -> None:
        """bubblewrap runs as the agent's uid: every parent of what it opens must let others pass (mode o+x)."""
        for parent in path.parents:
            if parent.exists() and not parent.stat().st_mode & 0o001:
                raise HiveError(
                    ErrorCode.UNAVAILABLE,
                    f"{what} must be reachable by agents' own uids, but {parent} is not (mode o+x); {fix}.",
                )

    def start(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> None:
        if self.running(name):
            raise HiveError(ErrorCode.CONFLICT, f"Agent {name!r} is running already.")
        state = self.prepare(name)
        as_root = os.geteuid() == 0
        if as_root:
            self._reachable(state, "Agents' state dirs", "choose a state dir outside it")
            program = Path(shutil.which(command[0]) or command[0]).resolve()
            self._reachable(program, f"The agent's program {program}", "install the hive on a Python outside it "
                            "(`make install` prefers /usr/bin/python3)")  # fmt: skip
        child = Child(
            name,
            self.argv(name, command),
            env={"PATH": "/usr/bin:/bin", "HOME": "/state", **env},
            user=self.uid(name) if as_root else None,  # without root, agents share our uid (still namespaced)
            on_exit=self._exited,
            keep=2_000,
        )
        self._running[name] = child.start()

    def _exited(self, child: Child) -> None:
        if child.name in self._stopping:
            self._stopping.discard(child.name)
            return
        self._on_exit(child.name, child.returncode)  # nobody asked it to stop: a crash

    def stop(self, name: str) -> None:
        child = self._running.get(name)
        if child is None or not child.alive():
            return
        self._stopping.add(name)
        child.stop(signal.SIGTERM, timeout=10)

    def destroy(self, name: str) -> None:
        """A sandbox leaves nothing behind once stopped."""
        self.stop(name)

    def stop_all(self) -> None:
        for name in list(self._running):
            self.stop(name)

    def running(self, name: str) -> bool:
        child = self._running.get(name)
        return child is not None and child.alive()

    def journal(self, name: str, lines: int) -> list[str]:
        child = self._running.get(name)
        return child.lines[-lines:] if child is not None else []

    def pid(self, name: str) -> int:
        return self._running[name].pid
