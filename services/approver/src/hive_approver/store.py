"""Approvals, questions and the audit log in PostgreSQL. Every transition is one conditional UPDATE: whoever's
UPDATE matches the row in its expected state wins, everyone else is told who decided what and when."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import asyncpg

from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import Approval, ApprovalKind, Question

ACTIONABLE = ("apply_commit", "spawn", "spawn_draft", "spawn_commit")


async def _init(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec("jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def connect(database_url: str) -> asyncpg.Pool:
    try:
        return await asyncpg.create_pool(database_url, min_size=1, max_size=10, init=_init)
    except (OSError, asyncpg.PostgresError) as exc:
        raise HiveError(ErrorCode.UNAVAILABLE, f"Cannot reach PostgreSQL: {exc}") from exc


# What a database outage looks like from asyncpg: no connection can be made, or the one in use went away.
OUTAGE = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.InternalClientError,
)


@dataclass(frozen=True)
class Outgoing:
    """A publish a change calls for (an event, a spawner command): kept in the outbox with the change itself."""

    subject: str
    body: bytes
    msg_id: str | None = None


Then = Callable[[Any], list[Outgoing]]
T = TypeVar("T")


class Database:
    """The pool, saying an outage as `unavailable` — the caller may try again, the approver rides it out — rather
    than as a bug (`internal`)."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.pool.PoolConnectionProxy[asyncpg.Record]]:
        with _outage():
            async with self._pool.acquire() as conn, conn.transaction():
                yield conn

    async def execute(self, query: str, *args: Any) -> str:
        with _outage():
            return str(await self._pool.execute(query, *args))

    async def fetch(self, query: str, *args: Any) -> list[asyncpg.Record]:
        with _outage():
            return list(await self._pool.fetch(query, *args))

    async def fetchrow(self, query: str, *args: Any) -> asyncpg.Record | None:
        with _outage():
            return await self._pool.fetchrow(query, *args)

    async def fetchval(self, query: str, *args: Any) -> Any:
        with _outage():
            return await self._pool.fetchval(query, *args)


@contextlib.contextmanager
def _outage() -> Iterator[None]:
    try:
        yield
    except OUTAGE as exc:
        raise HiveError(
            ErrorCode.UNAVAILABLE, f"The approver's database is not reachable ({exc!r}); try again."
        ) from exc


async def _enqueue(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record], items: list[Outgoing]) -> None:
    if items:
        await conn.executemany(
            "INSERT INTO outbox (subject, body, msg_id) VALUES ($1, $2, $3)",
            [(i.subject, i.body, i.msg_id) for i in items],
        )


def _approval(row: asyncpg.Record) -> Approval:
    data = dict(row)
    data["type"] = data.pop("kind")
    return Approval.model_validate(data)


def _question(row: asyncpg.Record) -> Question:
    return Question.model_validate(dict(row))


class Store:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = Database(pool)
        self.outbox = OutboxRows(self.pool)

    async def _write(self, parse: Callable[[asyncpg.Record], T], then: Then | None, sql: str, *args: Any) -> T:
        """One row written, and what `then` says it calls for put in the outbox, in one transaction: a caller
        told of a failure has left nothing behind."""
        async with self.pool.transaction() as conn:
            row = await conn.fetchrow(sql, *args)
            assert row is not None, sql
            written = parse(row)
            await _enqueue(conn, then(written) if then else [])
        return written

    async def audit(self, actor: str, action: str, target: str, outcome: str, **detail: Any) -> None:
        await self.pool.execute(
            "INSERT INTO audit (actor, action, target, outcome, detail) VALUES ($1, $2, $3, $4, $5)",
            actor,
            action,
            target,
            outcome,
            detail,
        )

    # ── approvals ──

    async def add_approval(
        self,
        *,
        agent: str,
        kind: ApprovalKind,
        requested_by: str,
        commit_ref: str | None = None,
        description: str = "",
        tool: str | None = None,
        input: dict[str, Any] | None = None,
        ttl: timedelta | None = None,
        then: Then | None = None,
    ) -> Approval:
        try:
            return await self._write(
                _approval,
                then,
                """INSERT INTO approvals (agent, kind, commit_ref, description, tool, input, requested_by,
                                          deadline, default_action)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8::interval,
                           CASE WHEN $8::interval IS NULL THEN NULL ELSE 'deny' END)
                   RETURNING *""",
                agent,
                kind,
                commit_ref,
                description,
                tool,
                input or {},
                requested_by,
                ttl,
            )
        except asyncpg.UniqueViolationError:
            pending = await self.pool.fetchval(
                "SELECT id FROM approvals WHERE agent = $1 AND kind = $2 AND status = 'pending'", agent, kind
            )
            raise HiveError(
                ErrorCode.CONFLICT,
                f"A {kind} request for {agent} is already pending as #{pending}; wait for the operator's decision.",
            ) from None

    async def freeze(self, id: int, sha: str, tag: str, diff: str, then: Then | None = None) -> Approval:
        sql = "UPDATE approvals SET frozen_sha = $2, tag = $3, diff = $4 WHERE id = $1 RETURNING *"
        return await self._write(_approval, then, sql, id, sha, tag, diff)

    async def approval(self, id: int) -> Approval:
        row = await self.pool.fetchrow("SELECT * FROM approvals WHERE id = $1", id)
        if row is None:
            raise HiveError(ErrorCode.NOT_FOUND, f"There is no approval #{id}.")
        return _approval(row)

    async def pending_approvals(self) -> int:
        return int(await self.pool.fetchval("SELECT count(*) FROM approvals WHERE status = 'pending'"))

    async def approvals(self, status: str | None, limit: int) -> list[Approval]:
        rows = await self.pool.fetch(
            "SELECT * FROM approvals WHERE $1::text IS NULL OR status = $1 ORDER BY id DESC LIMIT $2", status, limit
        )
        return [_approval(r) for r in rows]

    async def transition(
        self,
        id: int,
        *,
        expect: tuple[str, ...],
        to: str,
        by: str,
        note: str | None = None,
        resolve: bool = True,
        then: Then | None = None,
    ) -> Approval:
        """Move approval `id` from one of `expect` to `to`, exactly once; what `then` says the change calls for goes
        into the outbox in the same transaction."""
        async with self.pool.transaction() as conn:
            row = await conn.fetchrow(
                """UPDATE approvals SET status = $2, note = COALESCE($4, note),
                          resolved_at = CASE WHEN $6 THEN now() ELSE resolved_at END,
                          resolved_by = CASE WHEN $6 THEN $3 ELSE resolved_by END
                   WHERE id = $1 AND status = ANY($5::text[]) RETURNING *""",
                id,
                to,
                by,
                note,
                list(expect),
                resolve,
            )
            if row is not None:
                approval = _approval(row)
                await _enqueue(conn, then(approval) if then else [])
                return approval
        current = await self.approval(id)
        who = f" by {current.resolved_by}" if current.resolved_by else ""
        when = f" at {current.resolved_at:%Y-%m-%d %H:%M:%S}Z" if current.resolved_at else ""
        raise HiveError(ErrorCode.CONFLICT, f"Approval #{id} is already {current.status}{who}{when}.")

    async def applying(self) -> list[Approval]:
        rows = await self.pool.fetch("SELECT * FROM approvals WHERE status = 'applying' ORDER BY id")
        return [_approval(r) for r in rows]

    # ── questions ──

    async def add_question(
        self, asker: str, question: str, options: list[str], multi: bool, ttl: timedelta, *, then: Then | None = None
    ) -> Question:
        return await self._write(
            _question,
            then,
            """INSERT INTO questions (asker, question, options, multi, deadline)
               VALUES ($1, $2, $3, $4, now() + $5::interval) RETURNING *""",
            asker,
            question,
            options,
            multi,
            ttl,
        )

    async def question(self, id: int) -> Question:
        row = await self.pool.fetchrow("SELECT * FROM questions WHERE id = $1", id)
        if row is None:
            raise HiveError(ErrorCode.NOT_FOUND, f"There is no question #{id}.")
        return _question(row)

    async def questions(self, status: str | None, limit: int) -> list[Question]:
        rows = await self.pool.fetch(
            "SELECT * FROM questions WHERE $1::text IS NULL OR status = $1 ORDER BY id DESC LIMIT $2", status, limit
        )
        return [_question(r) for r in rows]

    async def settle_question(
        self, id: int, *, status: str, answer: str, by: str, then: Then | None = None
    ) -> Question:
        async with self.pool.transaction() as conn:
            row = await conn.fetchrow(
                """UPDATE questions SET status = $2, answer = $3, answered_by = $4, answered_at = now()
                   WHERE id = $1 AND status = 'pending' RETURNING *""",
                id,
                status,
                answer,
                by,
            )
            if row is not None:
                question = _question(row)
                await _enqueue(conn, then(question) if then else [])
                return question
        current = await self.question(id)
        raise HiveError(
            ErrorCode.CONFLICT,
            f"Question #{id} is already {current.status}"
            + (f" ({current.answer!r})" if current.answer else "")
            + (f" since {current.answered_at:%Y-%m-%d %H:%M:%S}Z." if current.answered_at else "."),
        )

    # ── deadlines ──

    async def next_deadline(self) -> datetime | None:
        value: datetime | None = await self.pool.fetchval(
            """SELECT min(d) FROM (
                   SELECT min(deadline) AS d FROM approvals WHERE status = 'pending' AND deadline IS NOT NULL
                   UNION ALL SELECT min(deadline) FROM questions WHERE status = 'pending') AS due"""
        )
        return value

    async def expire_due(self, then_approval: Then, then_question: Then) -> tuple[list[Approval], list[Question]]:
        """Settle everything whose deadline has passed, in deadline order: approvals by their default action,
        questions `[expired]`; with what each calls for in the outbox, in the same transaction."""
        async with self.pool.transaction() as conn:
            approvals = await conn.fetch(
                """UPDATE approvals SET status = CASE default_action WHEN 'approve' THEN 'approved' ELSE 'expired' END,
                          resolved_at = now(), resolved_by = 'deadline'
                   WHERE status = 'pending' AND deadline <= now() RETURNING *"""
            )
            questions = await conn.fetch(
                """UPDATE questions SET status = 'expired', answer = '[expired]', answered_by = 'deadline',
                          answered_at = now()
                   WHERE status = 'pending' AND deadline <= now() RETURNING *"""
            )
            expired = [_approval(r) for r in sorted(approvals, key=lambda r: r["deadline"])]
            answered = [_question(r) for r in sorted(questions, key=lambda r: r["deadline"])]
            await _enqueue(
                conn, [o for a in expired for o in then_approval(a)] + [o for q in answered for o in then_question(q)]
            )
        return expired, answered


class OutboxRows:
    """The outbox table, read and emptied by the approver's `Outbox`."""

    def __init__(self, pool: Database) -> None:
        self._db = pool

    async def oldest(self, limit: int = 100) -> list[asyncpg.Record]:
        return await self._db.fetch("SELECT id, subject, body, msg_id FROM outbox ORDER BY id LIMIT $1", limit)

    async def done(self, id: int) -> None:
        await self._db.execute("DELETE FROM outbox WHERE id = $1", id)
