"""The local backend: each agent under bubblewrap, for development, tests and `hivectl up`.

An agent runs in its own user, pid, ipc and uts namespaces as an unprivileged host uid of its own that is root
inside. It sees only what it needs, read-only: the system directories (`/usr`, `/etc`, the libraries, `/nix`), and
the hive's runtime (the Python the harness runs on, the hive's packages, the claude CLI) at the same paths as on the
host. Writable is only its own state dir, at `/state`; its policy is a read-only bind at `/run/hive`; the manager
also edits every agent's proposed repo at `/agents`. The checkout, the hive's state root (other agents' state, the
NATS credentials, PostgreSQL), /home, /root and the rest of /var are not there.

Run as root, each agent is its own host uid, which may not pass where the checkout or the state dir lies (a 0700
home): the sandbox is then entered through `hive_spawner.enter`, which binds what bwrap needs where that uid reaches.
Run as a user, every agent has that user's uid; the namespaces alone keep them apart (each sees only its own /state,
its own processes and its own /run/hive).

It shares the host's network, so it reaches NATS on loopback — and anything else listening on loopback: see
docs/SECURITY.md for what that means and what the nixos backend does instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import shutil
import signal
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from hive_spawner.dirs import POLICY_IN_SANDBOX, AgentDirs
from hive_spawner.enter import SYSTEM, VIEW, under_system
from hyperhive.process import Child, installed
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.names import MANAGER

UID_BASE = 200_000
ENTER = "hive_spawner.enter"


def system_view() -> list[str]:
    """bwrap arguments that show the host's system directories read-only (a merged-/usr link stays a link)."""
    args: list[str] = []
    for entry in SYSTEM:
        path = f"/{entry}"
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def runtime(command: Sequence[str], env: Mapping[str, str]) -> list[Path]:
    """What outside the system directories the harness needs to run: the Python it runs on (a venv and the
    interpreter it was made from), the folders its `.pth` files put on sys.path (the hive's packages, installed
    editable from the checkout), and the claude CLI's npm folder. Nothing else of the checkout."""
    found = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    for site in {Path(p) for p in sys.path if p.endswith("site-packages")}:
        for pth in site.glob("*.pth") if site.is_dir() else ():
            for line in pth.read_text(errors="replace").splitlines():
                if line.startswith("/") and Path(line).is_dir():
                    found.add(Path(line).resolve())
    programs = [command[0]] if command else []
    with contextlib.suppress(ValueError):
        programs += json.loads(env.get("HIVE_CLAUDE", "[]"))[:1]
    for program in programs:
        path = Path(shutil.which(program) or program)
        if path.is_absolute():
            folders = [p for p in (path, *path.parents) if p.name == "node_modules"]
            found.add(folders[0] if folders else path.resolve().parent)
    return sorted(p for p in found if not under_system(str(p)))


def _binds(paths: Iterable[Path]) -> list[str]:
    return [arg for path in paths for arg in ("--ro-bind", str(path), str(path))]


def sandboxes_binding(states: Iterable[Path]) -> dict[int, Path]:
    """The live bwrap processes that bind one of `states` at /state (as root's, from the view), by pid: found by
    their command lines, so a spawner finds the sandboxes an earlier one left."""
    wanted = {str(state): state for state in states}
    found = {}
    for proc in Path("/proc").iterdir() if wanted else ():
        if not proc.name.isdigit():
            continue
        try:
            argv = _command_line(proc).decode(errors="replace").split("\0")
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if not (argv[0].endswith("bwrap") or ENTER in argv[:4]):  # the pid of an entering sandbox is bwrap's to be
            continue
        bound = [argv[i + 1] for i in range(len(argv) - 2) if argv[i] == "--bind" and argv[i + 2] == "/state"]
        seen = [path for b in bound for path in (b, b.removeprefix(VIEW))]
        if state := next((wanted[b] for b in seen if b in wanted), None):
            found[int(proc.name)] = state
    return found


PF_KTHREAD = 0x00200000


def _command_line(proc: Path) -> bytes:
    """A process's arguments. One in the middle of an exec (an entering sandbox becoming bwrap) shows none for a
    moment: read again, yielding the core, until it does (a kernel thread or a zombie never will: not waited for)."""
    for _ in range(1000):
        raw = proc.joinpath("cmdline").read_bytes()
        if raw:
            return raw
        fields = proc.joinpath("stat").read_text().rsplit(")", 1)[1].split()
        if fields[0] in "ZX" or int(fields[6]) & PF_KTHREAD:
            return raw
        os.sched_yield()
    return b""


class LocalBackend(AgentDirs):
    def __init__(
        self,
        state_root: Path,
        *,
        on_exit: Callable[[str, int | None], None],
        proposed_root: Path | None = None,
        nice: int = 10,
    ) -> None:
        super().__init__(state_root, proposed_root, base=UID_BASE, step=1)
        self._on_exit = on_exit
        self.nice = nice
        self._running: dict[str, Child] = {}
        self._stopping: set[Child] = set()

    def argv(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> list[str]:
        bwrap = installed("bwrap", "bubblewrap")
        return [
            bwrap, "--unshare-user", "--uid", "0", "--gid", "0", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
            "--hostname", name, "--die-with-parent", "--new-session", "--disable-userns",
            *system_view(),
            # A fresh /tmp first: the runtime may live under the host's /tmp (a checkout there), bound on top of it.
            "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev",  # noqa: S108 - a fresh tmpfs of its own
            *_binds(runtime(command, env)),
            "--dir", "/state", "--bind", str(self.state_dir(name)), "/state",
            "--dir", POLICY_IN_SANDBOX, "--ro-bind", str(self.policy_folder(name)), POLICY_IN_SANDBOX,
            *(["--bind", str(self.proposed_root), "/agents"] if name == MANAGER and self.proposed_root else []),
            "--remount-ro", "/", "--chdir", "/state",
            "--", *command,
        ]  # fmt: skip

    def start(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> None:
        if name in self.running(name):
            raise HiveError(ErrorCode.CONFLICT, f"Agent {name!r} is running already.")
        self.prepare(name)
        argv = self.argv(name, command, env)
        if os.geteuid() == 0:  # root enters as the agent's uid, through a view of what bwrap binds
            argv = [sys.executable, "-I", "-m", ENTER, str(self.uid(name)), "--", *argv]
        if self.nice:
            # Below the host's services, so that a storm of agents (a hundred harnesses starting, CLIs running their
            # turns) leaves NATS, the broker and the spawner their CPU. Inherited by everything the agent runs, and
            # never undone from inside: lowering a niceness needs CAP_SYS_NICE of the host's user namespace.
            argv = [installed("nice", "coreutils"), "-n", str(self.nice), *argv]
        child = Child(
            name,
            argv,
            env={"PATH": "/usr/bin:/bin", "HOME": "/state", **env},
            on_exit=self._exited,
            keep=2_000,
        )
        self._running[name] = child.start()

    def _exited(self, child: Child) -> None:
        if child in self._stopping:
            self._stopping.discard(child)
            return
        self._on_exit(child.name, child.returncode)  # nobody asked it to stop: a crash

    def stop(self, name: str) -> None:
        """End the agent's sandbox whole: every bwrap that binds its state dir, the pid-1 one among them (which takes
        its pid namespace down at once, as bwrap's own parent-death signal would) — bwrap ended as it starts can
        leave a child that has no parent-death signal yet, which would run on beside the next start."""
        child = self._running.get(name)
        if child is not None and child.alive():
            self._stopping.add(child)  # the child, not the name: a restart's new child must still report its crash
        self._end([name])
        if child is not None:  # gone already: this waits for its output's end (its reader may have reaped it first)
            with contextlib.suppress(ProcessLookupError):
                child.stop(signal.SIGTERM, timeout=10)

    def destroy(self, name: str) -> None:
        """A sandbox leaves nothing behind once stopped."""
        self.stop(name)

    def stop_all(self) -> None:
        for name in list(self._running):
            self.stop(name)

    def reap_orphans(self) -> list[str]:
        """End the sandboxes of our agents that an earlier spawner left running (killed with SIGKILL, its children
        were not told): found by the state dir bwrap binds at /state, they would otherwise run twice once this
        spawner starts the agent again. Returns whose were ended."""
        folders = list(self.state_root.iterdir()) if self.state_root.is_dir() else []
        ours = [n.name for n in folders if n.is_dir() and not n.name.startswith(".")]
        return self._end([name for name in ours if name not in self.running(*ours)])

    def _end(self, names: list[str]) -> list[str]:
        """SIGKILL every bwrap that binds one of `names`' state dirs, wait for each to be gone (on its pidfd), and
        look again until none is left (one may have been forking as its parent was ended); return whose were."""
        ended: set[str] = set()
        for _ in range(10):  # a sandbox forks a bounded number of bwraps
            found = self._sandboxes(names)
            if not found:
                break
            for pid, name in found.items():
                with contextlib.suppress(ProcessLookupError):
                    pidfd = os.pidfd_open(pid)
                    try:
                        signal.pidfd_send_signal(pidfd, signal.SIGKILL)  # this process, even if its pid is reused
                        select.select([pidfd], [], [], 10)  # readable once it has exited
                    finally:
                        os.close(pidfd)
                ended.add(name)
        return sorted(ended)

    def _sandboxes(self, names: list[str]) -> dict[int, str]:
        """The live bwrap processes that bind one of `names`' state dirs at /state, by pid."""
        dirs = {self.state_dir(name): name for name in names}
        return {pid: dirs[state] for pid, state in sandboxes_binding(dirs).items()}

    def running(self, *names: str) -> set[str]:
        """Which of `names` have a live sandbox that is not being stopped (a child whose reader thread is reaping it
        still polls as alive, and a start right after a stop was refused as running already)."""
        return {
            name
            for name in names
            if (child := self._running.get(name)) is not None and child.alive() and child not in self._stopping
        }

    def journal(self, name: str, lines: int) -> list[str]:
        child = self._running.get(name)
        return child.lines[-lines:] if child is not None else []

    def sandbox(self, name: str) -> Child:
        """The running sandbox of `name`: its pid, and its output lines to wait for."""
        return self._running[name]
