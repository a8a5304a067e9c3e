"""What the benchmarks share: a nats-server of their own with the hive's identities, hive services started as their
own processes, as `hivectl up` runs them (all stopped and removed at the end); one percentile; and one way to run,
on the event loop of what is measured, printing JSON or failing with the reason."""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx

from hivectl.natsserver import NatsServer
from hyperhive.process import Child, ChildFailed, start_service
from hyperhive.runtime import LoopFactory, service_loop


class BenchFailed(Exception):
    """A benchmark could not measure what it measures; the message says what went wrong."""


def percentile(samples: Sequence[float], p: float) -> float:
    """The `p`th percentile (0-100) by linear interpolation between the two closest ranks: numpy's default, and
    `statistics.median` at 50; 100 is the maximum."""
    if not samples:
        raise BenchFailed("no samples to take a percentile of")
    ordered = sorted(samples)
    at = (len(ordered) - 1) * p / 100
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def summary(samples: Sequence[float], percentiles: Sequence[float] = (50, 99), digits: int = 3) -> dict[str, float]:
    """Durations in seconds as milliseconds: each percentile (`p50_ms`; 100 is `max_ms`), the mean, the count."""
    out = {"max_ms" if p == 100 else f"p{p:g}_ms": round(percentile(samples, p) * 1000, digits) for p in percentiles}
    return {**out, "mean_ms": round(statistics.fmean(samples) * 1000, digits), "n": len(samples)}


def arguments(doc: str | None) -> argparse.ArgumentParser:
    """A benchmark's command line, with `--out`."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="write the JSON result here instead of stdout")
    return parser


def run(
    main: Coroutine[Any, Any, dict[str, object]], out: Path | None = None, loop: LoopFactory = service_loop
) -> None:
    """Run a benchmark on `loop` (the services' uvloop, or the harness's loop for what runs in the harness), and
    write its JSON result to `out` (stdout without). A benchmark that fails exits non-zero with its reason and
    writes no result."""
    try:
        with asyncio.Runner(loop_factory=loop) as runner:
            result = runner.run(main)
    except (BenchFailed, ChildFailed) as exc:  # a service that did not start: its last lines say why
        raise SystemExit(f"{Path(sys.argv[0]).name}: failed: {exc}") from None
    text = json.dumps(result, indent=2) + "\n"
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text)


@dataclass
class BenchHive:
    root: Path
    server: NatsServer
    children: list[Child] = field(default_factory=list)

    def service(self, name: str, *, python: str = sys.executable, **env: str) -> Child:
        """`python -m hive_<name>` with its own credential, once it logs that it is ready; `python` may be another
        checkout's, to measure its service on the same server."""
        creds = str(self.server.identities.seed_path(name))
        child = start_service(name, {"HIVE_NATS_URL": self.server.url, "HIVE_NATS_CREDS": creds, **env}, python=python)
        self.children.append(child)
        return child


@contextmanager
def bench_hive(tmp: str | None = None) -> Iterator[BenchHive]:
    """A fresh nats-server under a new folder in `tmp` (agents' uids must reach it when they run: mode 0711)."""
    root = Path(tempfile.mkdtemp(prefix="hive-bench-", dir=tmp))
    root.chmod(0o711)
    hive = BenchHive(root, NatsServer(root / "nats", port=-1).start())
    try:
        yield hive
    finally:
        for child in reversed(hive.children):
            child.stop()
        hive.server.stop()
        shutil.rmtree(root, ignore_errors=True)


class EventStream:
    """One SSE client of the dashboard's `/events` from HIVE_EVENTS sequence `after`: when each `hive` event first
    arrived, by its stream sequence (the event's `id:`). `ready` is set by the feed's `hello`."""

    def __init__(self, client: httpx.AsyncClient, after: int) -> None:
        self.client = client
        self.after = after
        self.arrived: dict[int, float] = {}
        self.changed = asyncio.Condition()
        self.ready = asyncio.Event()
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async with self.client.stream("GET", f"/events?after={self.after}") as response:
            if response.status_code != 200:
                raise BenchFailed(f"/events answered {response.status_code}: {await response.aread()!r}")
            fields: dict[str, str] = {}
            async for line in response.aiter_lines():
                if line:
                    name, _, value = line.partition(":")
                    fields[name] = value.removeprefix(" ")
                    continue
                if fields.get("event") == "hello":
                    self.ready.set()
                elif fields.get("event") == "hive" and "id" in fields:
                    async with self.changed:
                        self.arrived.setdefault(int(fields["id"]), time.perf_counter())
                        self.changed.notify_all()
                fields = {}

    async def seen(self, seq: int) -> float:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: seq in self.arrived), 10)
        return self.arrived[seq]
