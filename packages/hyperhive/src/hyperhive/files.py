"""Files the hive writes and reads: secrets, state that must survive a crash, and files an agent may have written.

`write_secret` fsyncs: a credential that a crash leaves half-written locks its principal out. `write_atomic` does
not: what it writes (generated configuration, a harness's bookkeeping) is rewritten from memory at the next change,
so a rename that makes readers see either the old or the new whole file is all it needs. `read_untrusted` is for
anything in an agent's state dir: the agent can replace it with a link, a FIFO, a folder or garbage, and none of
that may stop or steer whoever reads it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import stat
import tempfile
from pathlib import Path

log = logging.getLogger("hyperhive.files")

SECRET_MODE = 0o600
MAX_UNTRUSTED_BYTES = 1 << 20


def write_secret(path: Path, data: bytes) -> None:
    """Write a secret file atomically with mode 0600 from its first byte; a folder it needs is made 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    _replace(path, data, SECRET_MODE, sync=True)


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` whole: a reader sees the old file or the new one, never a part."""
    _replace(path, text.encode(), 0o644, sync=False)


def _replace(path: Path, data: bytes, mode: int, *, sync: bool) -> None:
    """Write `data` to a temporary file of a name nobody can guess, made by us (O_EXCL, so never through a link an
    agent planted in a folder it can write), then rename it over `path` (which replaces a link, never follows it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            if sync:
                out.flush()
                os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_untrusted(path: Path, pattern: re.Pattern[str] | None = None) -> str | None:
    """The stripped text of `path`, or None when it is absent — or is not a regular file of at most 1 MiB of UTF-8
    (a link is not followed, a FIFO is not waited on), or does not match `pattern`; those are logged."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        log.warning("file=%s outcome=unreadable error=%r", path, exc)
        return None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_UNTRUSTED_BYTES:
            log.warning(
                "file=%s outcome=refused why=%s", path, "too large" if stat.S_ISREG(info.st_mode) else "not a file"
            )
            return None
        data = f.read(MAX_UNTRUSTED_BYTES + 1)
    try:
        text = data.decode().strip()
    except UnicodeDecodeError:
        log.warning("file=%s outcome=refused why=not_utf8", path)
        return None
    if pattern is not None and not pattern.fullmatch(text):
        log.warning("file=%s outcome=refused why=unexpected_content", path)
        return None
    return text
