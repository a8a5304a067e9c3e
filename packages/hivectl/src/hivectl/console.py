"""What `hivectl up` prints, and where the rest goes: every line of every process is appended to its log file under
the state dir (`logs/<name>.log`, read with `hivectl logs --service <name>`); the terminal shows the services' own
one-line events and anything at WARNING or above, from every process; `-v` shows everything."""

from __future__ import annotations

import re
import sys
import threading
from pathlib import Path
from typing import TextIO

ROTATE_BYTES = 10 << 20  # a log past this at start is kept as `<name>.log.1`, once

# What a line says about its importance, per kind of process.
SERVICE_LINE = re.compile(r"^\S+ \S+ (?P<level>[A-Z]+) (?P<logger>\S+) ")  # hyperhive.runtime.setup_logging
NATS_LOUD = re.compile(r"\[(ERR|WRN|FTL)\]")
POSTGRES_LOUD = re.compile(r"\b(WARNING|ERROR|FATAL|PANIC):")
OWN_LOGGERS = ("hive_", "hyperhive")


def shown(name: str, line: str) -> bool:
    """Whether a line of process `name` belongs on the terminal."""
    if name == "nats":
        return bool(NATS_LOUD.search(line))
    if name == "postgres":
        return bool(POSTGRES_LOUD.search(line))
    parsed = SERVICE_LINE.match(line)
    if parsed is None:
        return True  # not a log line (a traceback, a print): something went wrong, show it
    level, logger = parsed["level"], parsed["logger"]
    return level in ("WARNING", "ERROR", "CRITICAL") or (level == "INFO" and logger.startswith(OWN_LOGGERS))


class Console:
    """Where the lines of a local hive's processes go (see the module's docstring); safe from their reader threads."""

    def __init__(self, logs: Path, *, verbose: bool = False, terminal: TextIO = sys.stderr) -> None:
        self.logs = logs
        self.verbose = verbose
        self.terminal = terminal
        self._lock = threading.Lock()
        self._files: dict[str, TextIO] = {}

    def __call__(self, name: str, line: str) -> None:
        with self._lock:
            print(line, file=self._file(name), flush=True)
            if self.verbose or shown(name, line):
                print(f"[{name}] {line}", file=self.terminal, flush=True)

    def say(self, line: str) -> None:
        """hivectl's own word: always on the terminal."""
        with self._lock:
            print(f"hivectl: {line}", file=self.terminal, flush=True)

    def log_of(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def _file(self, name: str) -> TextIO:
        if name not in self._files:
            self.logs.mkdir(parents=True, exist_ok=True)
            path = self.log_of(name)
            if path.exists() and path.stat().st_size > ROTATE_BYTES:
                path.replace(path.with_name(f"{path.name}.1"))
            self._files[name] = path.open("a", encoding="utf-8", errors="replace")
        return self._files[name]

    def close(self) -> None:
        with self._lock:
            for file in self._files.values():
                file.close()
            self._files.clear()


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a log file (read from its end: a log may be large)."""
    if not path.exists():
        return []
    with path.open("rb") as file:
        file.seek(0, 2)
        size, block, data = file.tell(), 64 << 10, b""
        while size > 0 and data.count(b"\n") <= lines:
            step = min(block, size)
            size -= step
            file.seek(size)
            data = file.read(step) + data
    return data.decode("utf-8", errors="replace").splitlines()[-lines:]
