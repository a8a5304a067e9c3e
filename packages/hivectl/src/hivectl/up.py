"""`hivectl up`: the one-command local hive.

Starts the embedded nats-server and PostgreSQL under the state dir (or uses `--database-url`), applies every
service's migrations, starts each installed host service as its own process, waits until each answers its NATS
micro PING, and stops everything in reverse order on Ctrl-C or SIGTERM. A second run reuses the state dir.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import shutil
import signal
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import asyncpg

from hivectl.console import Console
from hivectl.layout import Layout, checkout_claude, installed_services
from hivectl.natsserver import NatsServer
from hivectl.postgres import Postgres, with_database
from hyperhive import bus, streams
from hyperhive.files import write_atomic
from hyperhive.migrate import migrate_services
from hyperhive.process import Child, ChildFailed, check_port_free, start_service
from hyperhive.settings import HiveSettings, default_state_dir
from hyperhive.wire import subjects
from hyperhive.wire.errors import HiveError
from hyperhive.wire.names import OPERATOR

DATABASE = "hyperhive"
READY_TIMEOUT = 60.0
RESTARTS_PER_MINUTE = 5  # then the hive stops: a process that keeps dying needs a person


@dataclass
class UpOptions:
    state_dir: Path
    host: str = "127.0.0.1"
    nats_port: int = 4222
    postgres_port: int = 5433
    postgres_tcp: bool = False
    dashboard_port: int = 8420
    database_url: str | None = None
    demo: bool = False
    verbose: bool = False


async def prepare_database(admin_url: str, services: list[str]) -> str:
    """Create the hive's database when missing and apply every service's migrations; return its URL."""
    conn = await asyncpg.connect(admin_url)
    try:
        if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", DATABASE):
            await conn.execute(f'CREATE DATABASE "{DATABASE}"')
    finally:
        await conn.close()
    url = with_database(admin_url, DATABASE)
    conn = await asyncpg.connect(url)
    try:
        await migrate_services(conn, services)
    finally:
        await conn.close()
    return url


async def declare_streams(settings: HiveSettings) -> None:
    async with bus.connected(settings, name="hivectl-up", inbox_prefix=subjects.reply_prefix(OPERATOR)) as nc:
        await streams.declare(nc.jetstream())


async def ping(settings: HiveSettings, service: str) -> None:
    async with bus.connected(settings, name="hivectl-up", inbox_prefix=subjects.reply_prefix(OPERATOR)) as nc:
        await nc.request(f"$SRV.PING.{service}", b"", timeout=5)


class LocalHive:
    """The processes of one local hive, started in order and stopped in reverse."""

    def __init__(self, options: UpOptions, terminal: TextIO = sys.stderr) -> None:
        self.options = options
        self.layout = Layout(options.state_dir)
        self.echo = Console(self.layout.logs, verbose=options.verbose, terminal=terminal)
        self.nats = NatsServer(
            self.layout.nats_root, host=options.host, port=options.nats_port, echo=self.echo, on_exit=self._exited
        )
        self.postgres: Postgres | None = None
        self.services: dict[str, Child] = {}
        self.events: queue.Queue[tuple[str, Child | None]] = queue.Queue()
        self.database_url = ""
        self.stopping = False
        self.agent_env = {"HIVE_CLAUDE": json.dumps(claude_command())}
        if "HIVE_CLAUDE_ENV" in os.environ:  # how the CLI reaches the model (a proxy's ANTHROPIC_BASE_URL, …)
            self.agent_env["HIVE_CLAUDE_ENV"] = os.environ["HIVE_CLAUDE_ENV"]
        self._demo_stack = ExitStack()
        self.started_at = time.time()

    def start(self) -> None:
        o = self.options
        if o.demo:
            self._start_demo_model()
        check_port_free(o.host, o.nats_port, "NATS", "--nats-port")
        if "dashboard" in installed_services():
            check_port_free(o.host, o.dashboard_port, "the dashboard", "--dashboard-port")
        self.started_at = time.time()
        if o.database_url is None and o.postgres_tcp:
            check_port_free(o.host, o.postgres_port, "PostgreSQL", "--postgres-port")
        self.layout.state_dir.mkdir(parents=True, exist_ok=True)
        self._say(f"starting nats-server on {o.host}:{o.nats_port} (its log: {self.echo.log_of('nats')})")
        self.nats.start()
        asyncio.run(declare_streams(self.operator_settings()))
        if o.database_url is None:
            host = o.host if o.postgres_tcp else None
            self.postgres = Postgres(
                self.layout.postgres_data, host=host, port=o.postgres_port, echo=self.echo, on_exit=self._exited
            )
            first = not (self.layout.postgres_data / "PG_VERSION").exists()
            self._say(
                "creating the PostgreSQL cluster (first start only: a few seconds)" if first else "starting PostgreSQL"
            )
            self.postgres.start()
            admin_url = self.postgres.url()
        else:
            admin_url = o.database_url
        if not o.demo and not self.layout.credential.exists():
            where = "" if o.state_dir == default_state_dir() else f" --state-dir {o.state_dir}"
            self._say(
                "There is no Anthropic credential yet, so agents will wait as needs-login: add one with "
                f"`hivectl login{where}` (an API key, or the token `claude setup-token` prints)."
            )
        names = installed_services()
        database_url = self.database_url = asyncio.run(prepare_database(admin_url, names))
        write_atomic(self.layout.hive_file, json.dumps({"nats_url": self.nats.url}) + "\n")
        for name in names:
            self._say(f"starting {name}" + (" (it starts the agents that were running)" if name == "spawner" else ""))
            self._start_service(name, database_url)

    def _start_demo_model(self) -> None:
        """The demo's agents talk to a scripted Messages API on loopback (hivetest ships it), not to Anthropic."""
        try:
            from hivetest.demo import scenario  # noqa: PLC0415 - a development package, needed only here
            from hivetest.messages_api import serve_messages_api  # noqa: PLC0415
        except ImportError:
            raise ChildFailed("The demo needs the hivetest package of a hyperhive checkout (`make install`).") from None
        api = self._demo_stack.enter_context(serve_messages_api())
        api.responder = scenario
        self.agent_env["HIVE_CLAUDE_ENV"] = json.dumps(
            {
                "ANTHROPIC_BASE_URL": api.url,
                "ANTHROPIC_API_KEY": "scripted-demo",
                "DISABLE_TELEMETRY": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            }
        )

    def _service_env(self, name: str, database_url: str) -> dict[str, str]:
        env = {
            "HIVE_NATS_URL": self.nats.url,
            "HIVE_NATS_CREDS": str(self.layout.seed(name)),
            "HIVE_DATABASE_URL": database_url,
            "HIVE_STATE_DIR": str(self.layout.state_dir),
            "HIVE_NATS_AUTH_DIR": str(self.layout.nats_root),
        }
        if name == "dashboard":
            env["HIVE_DASHBOARD_HOST"] = self.options.host
            env["HIVE_DASHBOARD_PORT"] = str(self.options.dashboard_port)
        if name == "spawner":
            env["HIVE_BOOTSTRAP_MANAGER"] = "true"
            env["HIVE_AGENT_ENV"] = json.dumps(self.agent_env)
            if not self.options.demo:  # the demo's model is scripted: a real credential has no business there
                env["HIVE_CREDENTIAL_FILE"] = str(self.layout.credential)
        return env

    def _start_service(self, name: str, database_url: str) -> None:
        env = self._service_env(name, database_url)
        child = start_service(name, env, timeout=READY_TIMEOUT, echo=self.echo, on_exit=self._exited)
        self.services[name] = child
        asyncio.run(ping(self.operator_settings(), name))

    def operator_settings(self) -> HiveSettings:
        return HiveSettings(
            nats_url=self.nats.url, nats_creds=self.layout.seed(OPERATOR), state_dir=self.layout.state_dir
        )

    def summary(self) -> str:
        o = self.options
        where = f"{o.host}:{o.postgres_port}" if o.postgres_tcp else f"its unix socket in {self.layout.state_dir}"
        postgres = f"embedded, on {where}" if self.postgres else "the --database-url you gave"
        lines = [
            "hyperhive is up.",
            f"  state dir   {self.layout.state_dir}",
            f"  nats        {self.nats.url} (operator credential {self.layout.seed(OPERATOR)})",
            f"  postgres    {postgres}",
            f"  services    {', '.join(self.services) or 'none installed'}",
            *self._dashboard_lines(),
            "Try `hivectl status` in another terminal. Ctrl-C stops the hive.",
        ]
        if o.demo:
            lines += [
                "",
                "DEMO: the agents' model is SCRIPTED (a stand-in Messages API on loopback), not Claude. The agents,",
                "their sandboxes, harnesses and the real claude CLI are real. In another terminal:",
                '  hivectl send manager "hello"      # the manager answers and asks to spawn `scout`',
                "  hivectl inbox                      # read what the manager wrote to you",
                "  hivectl approvals                  # the spawn approval, with its diff",
                "  hivectl approve <id>               # scout starts and reports to the manager",
                "  hivectl inbox                      # the manager tells you scout is up",
            ]
        return "\n".join(lines)

    def _dashboard_lines(self) -> list[str]:
        """Where the dashboard is, and at the hive's first start its generated password, printed this once (it stays
        in a 0600 file until the operator changes it: `hivectl passwd`)."""
        if "dashboard" not in self.services:
            return []
        from hive_dashboard import password  # noqa: PLC0415 - installed with the dashboard, which may not be
        from hive_dashboard.service import url_of  # noqa: PLC0415

        lines = [f"  dashboard   {url_of(self.layout.state_dir) or '(no address yet)'} (user operator)"]
        first = password.initial_password(self.layout.state_dir)
        made_now = first is not None and password.hash_file(self.layout.state_dir).stat().st_mtime >= self.started_at
        if made_now:
            lines.append(f"  password    {first}  (shown once; change it with `hivectl passwd` or on the page)")
        elif first is not None:
            lines.append(
                f"  password    the first one, still in {password.initial_password_file(self.layout.state_dir)}"
            )
        return lines

    def _exited(self, child: Child) -> None:
        if not self.stopping:
            self.events.put(("exited", child))

    def _restart(self, name: str) -> None:
        if name == "nats":
            self.nats.start()  # the same port, store and credentials: every connection comes back by itself
        elif name == "postgres" and self.postgres is not None:
            self.postgres.start()
        else:
            self._start_service(name, self.database_url)

    def wait(self) -> int:
        """Supervise until Ctrl-C/SIGTERM (0). A process that exits — a service, nats-server or PostgreSQL — is
        started again after a back-off (0.5 s, doubling to 8 s), and said so; one that fails more than
        `RESTARTS_PER_MINUTE` times within a minute stops the hive, saying why (1): what systemd's
        `Restart=on-failure` with a start limit does."""
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.events.put(("stop", None)))
        failures: dict[str, list[float]] = {}
        while True:
            what, child = self.events.get()
            if what == "stop" or child is None:
                return 0
            now = time.monotonic()
            recent = [t for t in failures.get(child.name, []) if now - t < 60] + [now]
            failures[child.name] = recent
            if len(recent) > RESTARTS_PER_MINUTE:
                self._say(
                    f"{child.name} failed {len(recent)} times within a minute (last exit code "
                    f"{child.returncode}); stopping the hive. Its log: `hivectl logs --service {child.name}`."
                )
                return 1
            delay = min(0.5 * 2 ** (len(recent) - 1), 8.0)
            self._say(
                f"{child.name} exited with code {child.returncode}; starting it again in {delay:g} s "
                f"({len(recent)} of {RESTARTS_PER_MINUTE} allowed a minute)."
            )
            if self._stop_requested_within(delay):
                return 0
            try:
                self._restart(child.name)
                self._say(f"{child.name} is running again.")
            except (ChildFailed, OSError, HiveError) as exc:
                self._say(f"{child.name} did not start again: {exc}")
                self.events.put(("exited", child))

    def _stop_requested_within(self, seconds: float) -> bool:
        """Wait out a back-off, still answering Ctrl-C; other exits meanwhile wait their turn."""
        deadline, later = time.monotonic() + seconds, []
        try:
            while (left := deadline - time.monotonic()) > 0:
                try:
                    what, child = self.events.get(timeout=left)
                except queue.Empty:
                    return False
                if what == "stop":
                    return True
                later.append((what, child))
            return False
        finally:
            for event in later:
                self.events.put(event)

    def _say(self, line: str) -> None:
        self.echo.say(line)

    def stop(self) -> None:
        self.stopping = True
        for child in reversed(self.services.values()):
            child.on_exit = None
            child.stop(signal.SIGTERM)
        if self.postgres is not None:
            self.postgres.stop()
        self.nats.stop()
        self._demo_stack.close()
        self.echo.close()


def claude_command() -> list[str]:
    """How agents run the claude CLI: `HIVE_CLAUDE` (a JSON list), else this checkout's npm install, else PATH."""
    if "HIVE_CLAUDE" in os.environ:
        return list(json.loads(os.environ["HIVE_CLAUDE"]))
    if (checkout := checkout_claude()).exists():
        return [str(checkout)]
    return [shutil.which("claude") or "claude"]


def up(options: UpOptions, echo: TextIO = sys.stderr) -> int:
    hive = LocalHive(options, echo)
    try:
        hive.start()
        print(hive.summary(), file=echo, flush=True)
        return hive.wait()
    except ChildFailed as exc:
        print(f"hivectl up: {exc}", file=echo, flush=True)
        return 1
    finally:
        hive.stop()
