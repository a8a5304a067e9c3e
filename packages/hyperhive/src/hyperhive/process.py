"""A supervised child process whose output lines are watched: readiness and events come from what it prints."""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hyperhive.wire.errors import ErrorCode, HiveError

PR_SET_PDEATHSIG = 1
Echo = Callable[[str, str], None]
"""Where a child's lines go as they come: `echo(name, line)`."""


def installed(program: str, package: str) -> str:
    """Where `program` is on this process's PATH; a sentence naming the Debian `package` that has it when it is not."""
    found = shutil.which(program)
    if found is None:
        raise HiveError(ErrorCode.UNAVAILABLE, f"{program} is not installed (Debian: {package}).")
    return found


def _die_with_parent() -> None:
    # The child gets SIGTERM if the supervisor dies, even by SIGKILL: nothing is left behind.
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


class ChildFailed(RuntimeError):
    """A child exited, or did not print what it should, in time."""


class Child:
    """Run `argv`, keep its output lines, hand each to `echo(name, line)`, and let callers wait for a line."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        echo: Echo | None = None,
        on_exit: Callable[[Child], None] | None = None,
        user: int | None = None,
        keep: int = 10_000,
        pass_fds: Sequence[int] = (),
        on_line: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.echo = echo
        self.on_exit = on_exit
        self.user = user
        self.keep = keep
        self.pass_fds = tuple(pass_fds)
        self.on_line = on_line
        self.lines: list[str] = []
        self._dropped = 0
        self._changed = threading.Condition()
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    @property
    def pid(self) -> int:
        assert self._proc is not None
        return self._proc.pid

    def start(self) -> Child:
        self._proc = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            env=self.env,
            cwd=self.cwd,
            start_new_session=True,  # Ctrl-C reaches the supervisor only; it stops children in order
            user=self.user,
            group=self.user,
            pass_fds=self.pass_fds,
            extra_groups=[] if self.user is not None else None,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
        self._reader = threading.Thread(target=self._read, name=f"child-{self.name}", daemon=True)
        self._reader.start()
        return self

    def _read(self) -> None:
        assert self._proc is not None
        assert self._proc.stdout is not None
        for raw in self._proc.stdout:
            line = raw.rstrip("\n")
            if self.echo is not None:
                self.echo(self.name, line)
            if self.on_line is not None:
                self.on_line(line)
            with self._changed:
                self.lines.append(line)
                if len(self.lines) > 2 * self.keep:  # a long-lived child: keep the recent lines only
                    del self.lines[: self.keep]
                    self._dropped += self.keep
                self._changed.notify_all()
        self._proc.stdout.close()
        self._proc.wait()
        with self._changed:
            self._changed.notify_all()
        if self.on_exit is not None:
            self.on_exit(self)

    @property
    def returncode(self) -> int | None:
        return None if self._proc is None else self._proc.poll()

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def count(self) -> int:
        """How many lines the child has printed so far (a mark for `wait_for(after=…)`)."""
        return self._dropped + len(self.lines)

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float, *, after: int = 0) -> re.Match[str]:
        """Block until a line printed after the `after`-th matches; fail if the child exits or time runs out."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            seen = after
            while True:
                for line in self.lines[max(0, seen - self._dropped) :]:
                    if match := regex.search(line):
                        return match
                seen = self.count
                if not self.alive() and (self._reader is None or not self._reader.is_alive()):
                    raise ChildFailed(self._failure(f"exited before printing /{regex.pattern}/"))
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._changed.wait(remaining):
                    raise ChildFailed(self._failure(f"did not print /{regex.pattern}/ within {timeout:g}s"))

    def _failure(self, what: str) -> str:
        tail = "\n".join(self.lines[-15:])
        return f"{self.name} {what}; its last lines:\n{tail}"

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        """Signal the child and wait for it; SIGKILL if it does not exit in time."""
        if self._proc is None:
            return None
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):  # its reader thread may reap it first
                os.kill(self._proc.pid, sig)
            try:
                self._proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        return self._proc.returncode


SERVICE_READY = r"event=ready"  # what `hyperhive.bus.serve` logs once a service answers on NATS


def start_service(
    name: str,
    env: Mapping[str, str],
    *,
    python: str = sys.executable,
    timeout: float = 30.0,
    echo: Echo | None = None,
    on_exit: Callable[[Child], None] | None = None,
) -> Child:
    """`python -m hive_<name>` with `env` on top of ours, returned once it says it is ready (the way `hivectl up`,
    the tests and the benchmarks start a service); `python` may be another checkout's."""
    argv = [python, "-m", f"hive_{name}"]
    child = Child(name, argv, env={**os.environ, "PYTHONUNBUFFERED": "1", **env}, echo=echo, on_exit=on_exit)
    child.start().wait_for(SERVICE_READY, timeout)
    return child


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on right now, for servers that cannot pick their own (PostgreSQL)."""
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def check_port_free(host: str, port: int, what: str, flag: str) -> None:
    """Fail with a sentence naming the port and the flag that changes it."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            raise ChildFailed(
                f"Port {port} on {host} is already in use, so {what} cannot listen there; choose another with {flag}."
            ) from None
