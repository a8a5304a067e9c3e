"""The dashboard's sessions, login attempts and audit log in PostgreSQL. A cookie carries a random token; only its
sha256 is stored, so whoever reads the table cannot log in with it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from hyperhive.wire.errors import ErrorCode, HiveError

# What a database outage looks like from asyncpg: no connection can be made (the server is away, starting, shutting
# down, full, or not accepting connections to this database), or the one in use went away.
OUTAGE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    asyncpg.CannotConnectNowError,
    asyncpg.OperatorInterventionError,
    asyncpg.TooManyConnectionsError,
    asyncpg.ObjectNotInPrerequisiteStateError,
)
FAILURE_WINDOW = timedelta(minutes=15)


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(database_url: str) -> asyncpg.Pool:
    try:
        return await asyncpg.create_pool(database_url, min_size=1, max_size=5, init=_init)
    except (OSError, asyncpg.PostgresError) as exc:
        raise HiveError(ErrorCode.UNAVAILABLE, f"Cannot reach PostgreSQL: {exc}") from exc


@contextlib.contextmanager
def _outage() -> Iterator[None]:
    try:
        yield
    except OUTAGE as exc:
        raise HiveError(ErrorCode.UNAVAILABLE, f"PostgreSQL is not reachable right now ({exc!r}); try again.") from exc


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class Session:
    """A live operator session, as a request sees it."""

    token_hash: str
    account: str
    csrf: str
    password_id: str
    expires_at: datetime

    @property
    def short(self) -> str:
        """How the audit log names the session: enough to tell two apart, too little to find the cookie."""
        return self.token_hash[:12]


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def reading(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy[asyncpg.Record]]:
        """A connection for the stats' reads (`stats.py`); PostgreSQL away is `unavailable`."""
        with _outage():
            async with self._pool.acquire() as conn:
                yield conn

    async def open_session(self, account: str, password_id: str, lifetime: timedelta, client: str) -> str:
        """A new session; its cookie token (returned) exists nowhere else."""
        token = secrets.token_urlsafe(32)
        with _outage():
            await self._pool.execute(
                """INSERT INTO dashboard_sessions (token_hash, account, csrf, password_id, expires_at, client)
                   VALUES ($1, $2, $3, $4, now() + $5::interval, $6)""",
                token_hash(token),
                account,
                secrets.token_urlsafe(32),
                password_id,
                lifetime,
                client,
            )
        return token

    async def forget_old(self) -> None:
        """Drop sessions that ended a day ago and login records older than 30 days (the audit log keeps both)."""
        with _outage():
            await self._pool.execute(
                "DELETE FROM dashboard_sessions WHERE coalesce(revoked_at, expires_at) < now() - interval '1 day'"
            )
            await self._pool.execute("DELETE FROM dashboard_logins WHERE at < now() - interval '30 days'")

    async def session(self, token: str) -> Session | None:
        """The live session of a cookie token: not revoked, not expired."""
        with _outage():
            row = await self._pool.fetchrow(
                """UPDATE dashboard_sessions SET seen_at = now()
                   WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > now()
                   RETURNING token_hash, account, csrf, password_id, expires_at""",
                token_hash(token),
            )
        return None if row is None else Session(**dict(row))

    async def revoke(self, token_hash: str) -> None:
        with _outage():
            await self._pool.execute(
                "UPDATE dashboard_sessions SET revoked_at = now() WHERE token_hash = $1 AND revoked_at IS NULL",
                token_hash,
            )

    async def revoke_all(self, account: str) -> int:
        """End every session of `account` (a password change); how many were live."""
        with _outage():
            status = await self._pool.execute(
                "UPDATE dashboard_sessions SET revoked_at = now() WHERE account = $1 AND revoked_at IS NULL", account
            )
        return int(status.split()[-1])

    async def record_login(self, client: str, account: str, ok: bool) -> None:
        with _outage():
            await self._pool.execute(
                "INSERT INTO dashboard_logins (client, account, ok) VALUES ($1, $2, $3)", client, account, ok
            )

    async def recent_failures(self, client: str) -> int:
        """Failed logins from `client` in the last 15 minutes, since its last success."""
        with _outage():
            count = await self._pool.fetchval(
                """SELECT count(*) FROM dashboard_logins
                   WHERE client = $1 AND NOT ok AND at > now() - $2::interval
                     AND at > coalesce((SELECT max(at) FROM dashboard_logins WHERE client = $1 AND ok), '-infinity')""",
                client,
                FAILURE_WINDOW,
            )
        return int(count)

    async def audit(
        self,
        account: str,
        action: str,
        target: str,
        outcome: str,
        *,
        session: str = "",
        client: str = "",
        **detail: Any,
    ) -> int:
        """Record an action (or an attempt, `started`, settled later); its row id."""
        with _outage():
            return int(
                await self._pool.fetchval(
                    """INSERT INTO dashboard_audit (account, session, action, target, outcome, detail, client)
                       VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id""",
                    account,
                    session,
                    action,
                    target,
                    outcome,
                    detail,
                    client,
                )
            )

    async def settle(self, id: int, outcome: str) -> None:
        with _outage():
            await self._pool.execute("UPDATE dashboard_audit SET outcome = $2 WHERE id = $1", id, outcome)

    async def audit_log(self, limit: int = 100) -> list[dict[str, Any]]:
        with _outage():
            rows = await self._pool.fetch(
                """SELECT at, account, session, action, target, outcome, detail, client
                   FROM dashboard_audit ORDER BY id DESC LIMIT $1""",
                limit,
            )
        return [dict(r) for r in rows]
