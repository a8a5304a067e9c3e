"""pytest fixtures that start real servers: a nats-server of the hive's own (its generated accounts and
permissions) for each test, and one PostgreSQL per session with a fresh database per test cloned from a migrated
template. `DATABASE_URL` uses an existing PostgreSQL instead (docker-compose.test.yml); NATS is always the hive's own,
because what the hive is — an account per agent — is in its server's configuration.
A skipped test fails the session: what a test needs gets installed, not skipped.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from nats.aio.client import Client

from hivectl.layout import installed_services
from hivectl.natsserver import NatsServer
from hivectl.postgres import Postgres, with_database
from hivetest.hive import TestHive
from hyperhive.migrate import migrate_services
from hyperhive.process import free_port
from hyperhive.runtime import LoopFactory, service_loop

TEMPLATE = "hive_template"


pytest_plugins = ["hivetest.fixtures", "hivetest.standins"]  # the services as fixtures, for every test folder


def missing_system_packages(listing: Path) -> list[str]:
    """The packages of scripts/system-packages.txt whose command is not on PATH."""
    missing = []
    for line in listing.read_text().splitlines():
        fields = line.split()
        if fields and not fields[0].startswith("#") and shutil.which(fields[0]) is None:
            missing.append(fields[1])
    return missing


def pytest_sessionstart(session: pytest.Session) -> None:
    """A test that lacks a tool fails with the sentence that names it, before any test runs: never with a side
    effect of its absence halfway through a test."""
    listing = Path(session.config.rootpath) / "scripts" / "system-packages.txt"
    if listing.exists() and (missing := missing_system_packages(listing)):
        pytest.exit(
            f"hyperhive needs these system packages: {' '.join(missing)}; install them with: "
            f"sudo apt-get install {' '.join(missing)} (or run `make test` as root on Debian/Ubuntu)",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, LoopFactory]:
    """Tests run on the event loop the hive's services run on (`runtime.service_loop`: uvloop); the harness's own
    tests on the harness's (tests/harness/conftest.py)."""
    return {"uvloop": service_loop}


@pytest.fixture
def nats_server(tmp_path: Path) -> Iterator[NatsServer]:
    """This test's nats-server, with the hive's generated accounts and permissions.

    A fresh server per test (about 50 ms) isolates JetStream completely: deleting and re-creating a stream of the
    same name races with the server's removal of the old store, and purging keeps the de-duplication window.
    """
    server = NatsServer(tmp_path / "nats", port=-1).start()
    yield server
    server.stop()


@pytest.fixture
def spawner_state(tmp_path: Path) -> Path:
    """A spawner's state root, under pytest's tmp dir: its parents are 0700, as a home is, and agents (their own
    uids when the suite runs as root) must work from there all the same."""
    root = tmp_path / "spawner"
    root.mkdir()
    return root


@pytest.fixture
async def hive(nats_server: NatsServer, tmp_path: Path) -> AsyncIterator[TestHive]:
    """A clean hive on this test's nats-server: connect as any principal, add and remove agents for real."""
    async with TestHive(nats_server, tmp_path) as test_hive:
        yield test_hive


@pytest.fixture
async def operator_nc(hive: TestHive) -> Client:
    return await hive.connect("operator")


@pytest.fixture(scope="session")
def postgres_admin_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL superuser URL with a migrated template database `hive_template` on it."""
    if url := os.environ.get("DATABASE_URL"):
        yield url
        return
    server = Postgres(tmp_path_factory.mktemp("pg") / "data", port=free_port()).start(fsync=False)
    yield server.url()
    server.stop()


@pytest.fixture(scope="session")
def _template(postgres_admin_url: str) -> str:
    asyncio.run(_make_template(postgres_admin_url))
    return TEMPLATE


async def _make_template(postgres_admin_url: str) -> None:
    conn = await asyncpg.connect(postgres_admin_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    finally:
        await conn.close()
    conn = await asyncpg.connect(with_database(postgres_admin_url, TEMPLATE))
    try:
        await migrate_services(conn, installed_services())
    finally:
        await conn.close()


_databases = itertools.count()


@pytest.fixture
async def database_url(postgres_admin_url: str, _template: str) -> AsyncIterator[str]:
    """A fresh database for this test, cloned from the migrated template."""
    name = f"hive_test_{os.getpid()}_{next(_databases)}"
    conn = await asyncpg.connect(postgres_admin_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{_template}"')
        yield with_database(postgres_admin_url, name)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


_NOT_RUN: list[str] = []  # skipped, xfailed or xpassed: what did not run as a plain pass or fail


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped or hasattr(report, "wasxfail"):
        _NOT_RUN.append(report.nodeid)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A test that was skipped or marked xfail fails the session, whatever reports it (the terminal or none)."""
    if not _NOT_RUN or exitstatus != pytest.ExitCode.OK:
        return
    line = f"hivetest: {len(_NOT_RUN)} test(s) skipped or xfail ({', '.join(_NOT_RUN[:5])}); that is a failure here."
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        reporter.write_line(line, red=True)
    else:
        print(line, file=sys.stderr)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
