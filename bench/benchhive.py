"""What the benchmarks share: a nats-server of their own with the hive's identities, and hive services started as
their own processes, as `hivectl up` runs them; all stopped and removed at the end."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from hivectl.natsserver import NatsServer
from hyperhive.process import Child


@dataclass
class BenchHive:
    root: Path
    server: NatsServer
    children: list[Child] = field(default_factory=list)

    def service(self, name: str, **env: str) -> Child:
        """`python -m hive_<name>` with its own credential, once it logs that it is ready."""
        creds = str(self.server.identities.seed_path(name))
        env = {**os.environ, "HIVE_NATS_URL": self.server.url, "HIVE_NATS_CREDS": creds, **env}
        child = Child(name, [sys.executable, "-m", f"hive_{name}"], env=env).start()
        self.children.append(child)
        child.wait_for(r"event=ready", 30)
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
