"""What `hivectl up` puts on the terminal and what only in the log files."""

from __future__ import annotations

import io
from pathlib import Path

from hivectl.console import Console, tail

LINES = [  # (process, line, on the terminal)
    ("nats", "[1234] 2026/12/01 16:00:00.000000 [INF] Server is ready", False),
    ("nats", "[1234] 2026/12/01 16:00:00.000000 [WRN] Slow consumer detected", True),
    ("nats", "[1234] 2026/12/01 16:00:00.000000 [ERR] Error trying to connect", True),
    ("postgres", "2026-12-01 16:00:00.000 UTC [99] LOG:  database system is ready to accept connections", False),
    ("postgres", "2026-12-01 16:00:00.000 UTC [99] FATAL:  password authentication failed", True),
    ("broker", "2026-12-01 16:00:00,000 INFO hive_broker event=ready service=broker", True),
    ("broker", "2026-12-01 16:00:00,000 INFO nats.aio.client connected", False),
    ("broker", "2026-12-01 16:00:00,000 DEBUG hive_broker pulled 3", False),
    ("spawner", "2026-12-01 16:00:00,000 WARNING asyncio Executing took 0.2 seconds", True),
    ("approver", "Traceback (most recent call last):", True),
]


def test_the_terminal_gets_events_and_trouble_the_log_files_get_everything(tmp_path: Path) -> None:
    terminal = io.StringIO()
    console = Console(tmp_path / "logs", terminal=terminal)
    for name, line, _ in LINES:
        console(name, line)
    console.say("starting broker")
    console.close()
    assert terminal.getvalue().splitlines() == [
        *(f"[{name}] {line}" for name, line, shown in LINES if shown),
        "hivectl: starting broker",
    ]
    for name in {n for n, _, _ in LINES}:
        assert tail(tmp_path / "logs" / f"{name}.log", 100) == [line for n, line, _ in LINES if n == name]


def test_verbose_shows_everything(tmp_path: Path) -> None:
    terminal = io.StringIO()
    console = Console(tmp_path / "logs", verbose=True, terminal=terminal)
    for name, line, _ in LINES:
        console(name, line)
    console.close()
    assert len(terminal.getvalue().splitlines()) == len(LINES)


def test_tail_reads_the_end_of_a_large_log(tmp_path: Path) -> None:
    log = tmp_path / "big.log"
    log.write_text("".join(f"line {n}\n" for n in range(200_000)))
    assert tail(log, 3) == ["line 199997", "line 199998", "line 199999"]
    assert tail(tmp_path / "missing.log", 3) == []
