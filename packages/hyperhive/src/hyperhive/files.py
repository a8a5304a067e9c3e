"""Files the hive writes and reads: secrets, state that must survive a crash, and files an agent may have written.

`write_secret` fsyncs: a credential that a crash leaves half-written locks its principal out. `write_atomic` does
not: what it writes (generated configuration, a harness's bookkeeping) is rewritten from memory at the next change,
so a rename that makes readers see either the old or the new whole file is all it needs. `read_untrusted` is for
anything in an agent's state dir: the agent can replace it with a link, a FIFO, a folder or garbage, and none of
that may stop or steer whoever reads it.
"""

from __future__ import annotations

import logging
import os
import re
import stat
from pathlib import Path

log = logging.getLogger("hyperhive.files")

SECRET_MODE = 0o600
MAX_UNTRUSTED_BYTES = 1 << 20


def write_secret(path: Path, data: bytes) -> None:
    """Write a secret file atomically with mode 0600 from its first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def write_atomic(path: Path, text: str) -> None:
    """Replace `path` whole: a reader sees the old file or the new one, never a part."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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
