"""How root starts an agent's sandbox when what it binds lies where the agent's uid cannot pass (a checkout, a venv
or a state dir in a 0700 home such as /root): `python -I -m hive_spawner.enter UID -- bwrap ARGS…`.

While still root it makes a mount namespace of its own, opens each of bwrap's bind sources, covers /tmp with a
fresh tmpfs and binds every source there at its own path (`/tmp` + the host path), then becomes UID and execs bwrap
with those sources. bwrap, unprivileged, needs to pass only that tmpfs; the sandbox sees each folder at its host
path as before. The host's mounts are untouched (the namespace is private), and the view ends with the sandbox.
Only the standard library: it runs for every agent start.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

VIEW = "/tmp"  # noqa: S108 - covered by a tmpfs of this mount namespace's own, never the host's /tmp
CLONE_NEWNS = 0x00020000
MS_BIND, MS_REC, MS_PRIVATE, MS_NOSUID, MS_NODEV = 0x1000, 0x4000, 0x40000, 0x2, 0x4
PR_SET_PDEATHSIG = 1
BINDS = ("--bind", "--ro-bind")
SYSTEM = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "nix")  # the host's, seen by every agent


def under_system(path: str) -> bool:
    """Whether `path` is in one of the system directories, which every uid may pass: bound as they are."""
    parts = path.split("/")
    return len(parts) > 1 and parts[1] in SYSTEM


def viewed(path: str) -> str:
    """Where `path`'s bind source is in the view."""
    return VIEW + path


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def enter(uid: int, bwrap: list[str]) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    _check(libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _check(libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making / private")
    sources = {bwrap[i + 1] for i, arg in enumerate(bwrap[:-1]) if arg in BINDS and not under_system(bwrap[i + 1])}
    opened = {source: os.open(source, os.O_PATH | os.O_CLOEXEC) for source in sorted(sources)}  # before /tmp is covered
    _check(libc.mount(b"tmpfs", VIEW.encode(), b"tmpfs", MS_NOSUID | MS_NODEV, b"mode=0755"), f"a tmpfs on {VIEW}")
    for source, fd in opened.items():
        target = viewed(source)
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            os.makedirs(target, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            open(target, "w").close()
        _check(libc.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, MS_BIND | MS_REC, None), source)
        os.close(fd)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # a change of uid cleared the supervisor's
    argv = [viewed(a) if i and bwrap[i - 1] in BINDS and a in sources else a for i, a in enumerate(bwrap)]
    os.execv(argv[0], argv)  # noqa: S606 - bwrap, with the argument list the spawner built


def main() -> None:
    args = sys.argv[1:]
    if len(args) < 3 or not args[0].isdigit() or args[1] != "--":
        sys.exit("usage: python -m hive_spawner.enter UID -- bwrap ARGS…")
    try:
        enter(int(args[0]), args[2:])
    except OSError as exc:
        sys.exit(f"hive_spawner.enter: cannot make the sandbox's view: {exc}")


if __name__ == "__main__":
    main()
