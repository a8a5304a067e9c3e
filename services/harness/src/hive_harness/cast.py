"""A terminal session recorded as asciicast v2 (`/state/terminals/<utc>-<session>.cast`), so the operator can replay
later what was typed and shown (`asciinema play`): a header line, then one `[seconds, "o"|"i"|"r", text]` line per
output chunk, input chunk and resize.

The folder is the agent's own, so the file is made without following a link the agent may have planted (the harness
runs with the agent's uid: it could write nowhere the agent could not, but it must not be led to write elsewhere
than it means to).
"""

from __future__ import annotations

import codecs
import json
import os
import re
import stat
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

SESSION_ID = re.compile(r"[0-9a-f]{16}")
FOLDER = "terminals"


class CastError(OSError):
    """The recording cannot be made; the sentence says why."""


def folder_of(state: Path) -> Path:
    """`/state/terminals`, made when missing; refused when it is anything but a folder (a link, a file)."""
    path = state / FOLDER
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise CastError(f"{path} is not a folder")
    except OSError as exc:
        raise CastError(f"No terminal recording can be kept in {path}: {exc.strerror or exc}") from None
    return path


class Cast:
    """One session's recording, written line by line as it happens (a harness killed mid-session leaves a valid
    recording of everything up to then)."""

    def __init__(self, file: TextIO, started: float) -> None:
        self.file = file
        self.started = started
        self.decoders = {kind: codecs.getincrementaldecoder("utf-8")(errors="replace") for kind in ("o", "i")}

    @classmethod
    def open(cls, state: Path, session: str, *, cols: int, rows: int, title: str) -> Cast:
        if not SESSION_ID.fullmatch(session):
            raise CastError(f"{session[:40]!r} is not a session id")
        now = time.time()
        name = f"{datetime.fromtimestamp(now, UTC):%Y%m%dT%H%M%SZ}-{session}.cast"
        try:
            fd = os.open(folder_of(state) / name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise CastError(f"No terminal recording can be made ({exc.strerror})") from None
        file = os.fdopen(fd, "w", encoding="utf-8", buffering=1)  # a line at a time: each event is on disk
        header = {"version": 2, "width": cols, "height": rows, "timestamp": int(now), "title": title}
        file.write(json.dumps(header | {"env": {"TERM": "xterm-256color", "SHELL": "/bin/bash"}}) + "\n")
        return cls(file, time.monotonic())

    def _event(self, kind: str, text: str) -> None:
        if text and not self.file.closed:
            self.file.write(json.dumps([round(time.monotonic() - self.started, 6), kind, text]) + "\n")

    def output(self, data: bytes) -> None:
        self._event("o", self.decoders["o"].decode(data))

    def input(self, data: bytes) -> None:
        self._event("i", self.decoders["i"].decode(data))

    def resize(self, cols: int, rows: int) -> None:
        self._event("r", f"{cols}x{rows}")

    def close(self) -> None:
        self.file.close()
