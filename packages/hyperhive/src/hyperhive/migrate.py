"""Plain-SQL migrations, owned per service (`hive_<svc>/migrations/NNNN_name.sql`), applied once each, in order.

Every service applies its own at start, and `hivectl up` applies all before starting them; an advisory lock makes
concurrent runs (replicas starting together) safe.
"""

from __future__ import annotations

import logging
from importlib import resources
from importlib.abc import Traversable
from typing import Any, TypeAlias

import asyncpg
from asyncpg.pool import PoolConnectionProxy

log = logging.getLogger("hyperhive.migrate")

LOCK_KEY = 0x68697665  # "hive"


def migrations_of(service: str) -> Traversable | None:
    """The migrations folder of `hive_<service>`, when it has one."""
    try:
        folder = resources.files(f"hive_{service}") / "migrations"
    except ModuleNotFoundError:
        return None
    return folder if folder.is_dir() else None


Connection: TypeAlias = "asyncpg.Connection[Any] | PoolConnectionProxy[Any]"


async def migrate_services(conn: Connection, services: list[str]) -> None:
    """Apply every migration each of `services` ships (those with none are skipped)."""
    for service in services:
        if (folder := migrations_of(service)) is not None:
            await migrate(conn, service, folder)


async def migrate(conn: Connection, service: str, folder: Traversable | None = None) -> list[str]:
    """Apply the migrations of `service` (from `folder`, by default its package's) that are not applied yet; return
    their names."""
    folder = folder or migrations_of(service)
    if folder is None:
        raise FileNotFoundError(f"hive_{service} has no migrations folder")
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", LOCK_KEY)
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS hive_migrations (
                   service text NOT NULL,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now(),
                   PRIMARY KEY (service, name))"""
        )
        done = {r["name"] for r in await conn.fetch("SELECT name FROM hive_migrations WHERE service=$1", service)}
        for file in sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name):
            if file.name in done:
                continue
            await conn.execute(file.read_text())
            await conn.execute("INSERT INTO hive_migrations (service, name) VALUES ($1, $2)", service, file.name)
            applied_now.append(file.name)
            log.info("service=%s migration=%s outcome=applied", service, file.name)
    return applied_now
