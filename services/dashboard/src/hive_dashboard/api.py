"""`/api`: the dashboard's JSON, a FastAPI application mounted in the Starlette one, so its OpenAPI schema
(`/api/openapi.json`) is generated from the wire models it answers with (decision 0010). Every route needs a session
(the guard in front of the whole app sees to it), every state-changing one the CSRF token; every name in a path is
checked with the hive's name rule before it is used, and every action is audited with the operator who took it."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import FastAPI, Path, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field
from starlette.requests import HTTPConnection
from starlette.responses import Response

from hive_dashboard import errors, stats
from hive_dashboard.auth import COOKIE, client_of, session_of
from hive_dashboard.hive import Hive, Snapshot
from hive_dashboard.password import ACCOUNT, PasswordError, Passwords, check_password, set_password
from hive_dashboard.store import Store
from hyperhive.wire import models
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    MAX_ROW_ID,
    AgentsReply,
    AgentStatus,
    Approval,
    ApprovalsReply,
    ApprovalStatus,
    DepthsReply,
    Empty,
    HarnessReply,
    HarnessState,
    InboxReply,
    LogsReply,
    ModelRequest,
    OperatorSendRequest,
    PauseRequest,
    Question,
    QuestionsReply,
    SendReply,
    WireRequest,
)
from hyperhive.wire.names import OPERATOR, check_agent_ref

R = TypeVar("R")
Read = Callable[[Any, str, str, "stats.Window"], Awaitable[R]]
MAX_JOURNAL_LINES = 2000
QuestionStatus = Literal["pending", "answered", "expired", "cancelled"]
RowId = Annotated[int, Path(ge=0, le=MAX_ROW_ID, description="An approval's or question's id.")]

StatsAgent = Annotated[str | None, Query(max_length=20, description="An agent; none for the hive-wide series.")]
Since = Annotated[datetime | None, Query(description="From (ISO 8601); by default a day before `until`.")]
Until = Annotated[datetime | None, Query(description="Until (ISO 8601, excluded); by default now.")]


class Note(WireRequest):  # a NUL anywhere is refused, as at the wire
    note: str | None = Field(None, max_length=4000, description="Why, for the agent and the audit log.")


class Answer(WireRequest):  # a NUL anywhere is refused, as at the wire
    choices: list[str] = Field(default_factory=list, description="Options picked (several only when `multi`).")
    text: str | None = Field(None, max_length=20000, description="A free-text answer instead of options.")


class PasswordChange(WireRequest):  # a NUL anywhere is refused, as at the wire
    current: str = Field(max_length=1024)
    new: str = Field(max_length=1024)


class AuditEntry(BaseModel):
    at: datetime
    account: str
    session: str
    action: str
    target: str
    outcome: str
    detail: dict[str, Any]
    client: str


class Me(BaseModel):
    """Who this session is: what a page needs to act (its CSRF token) and to say who is logged in."""

    account: str
    csrf: str
    expires_at: datetime


def agent(name: str) -> str:
    """A name from a path, checked before it becomes a subject token."""
    return check_agent_ref(name)


def inbox_owner(name: str) -> str:
    return OPERATOR if name == OPERATOR else check_agent_ref(name)


class Audited:
    """Do what the operator asked and audit it with their account and session: recorded as `started` before it is
    done (so nothing is done that the log does not show: with PostgreSQL away, nothing is done at all), then settled
    with `ok` or the refusal's code."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def __call__(self, request: HTTPConnection, action: str, target: str, work: Awaitable[R], **detail: Any) -> R:
        session = session_of(request.scope)
        account, short = (session.account, session.short) if session else ("", "")
        client = client_of(request)
        try:
            row = await self.store.audit(account, action, target, "started", session=short, client=client, **detail)
        except BaseException:
            if asyncio.iscoroutine(work):
                work.close()  # never started: nothing was done
            raise
        try:
            result = await work
        except HiveError as exc:
            await self.store.settle(row, str(exc.code))
            raise
        except Exception:
            await self.store.settle(row, str(ErrorCode.INTERNAL))
            raise
        await self.store.settle(row, "ok")
        return result


def build(hive: Hive, store: Store, passwords: Passwords, state_dir: pathlib.Path) -> FastAPI:
    models.build_all()
    app = FastAPI(
        title="hyperhive dashboard API",
        version="1",
        docs_url=None,
        redoc_url=None,
        responses={
            status: {
                "model": errors.ErrorBody,
                "description": ", ".join(c for c, s in errors.STATUS.items() if s == status),
            }
            for status in sorted(set(errors.STATUS.values()))
        },
    )
    for exc_type, handler in errors.HANDLERS.items():
        app.add_exception_handler(exc_type, handler)

    act = Audited(store)

    @app.get("/me", response_model=Me)
    async def me(request: Request) -> Me:
        session = session_of(request.scope)
        assert session is not None  # the guard lets no request without one through
        return Me(account=session.account, csrf=session.csrf, expires_at=session.expires_at)

    @app.get("/snapshot", response_model=Snapshot)
    async def snapshot() -> Snapshot:
        return await hive.snapshot()

    @app.get("/agents", response_model=AgentsReply)
    async def agents() -> AgentsReply:
        return await hive.agents()

    @app.post("/agents/{name}/{verb}", response_model=AgentStatus)
    async def lifecycle(
        request: Request, name: str, verb: Literal["start", "stop", "restart", "destroy", "revive", "purge"]
    ) -> AgentStatus:
        return await act(request, verb, agent(name), hive.lifecycle(agent(name), verb))

    _decisions(app, hive, act)

    @app.get("/inbox/{owner}", response_model=InboxReply)
    async def inbox(owner: str, limit: int = Query(50, ge=1, le=500)) -> InboxReply:
        return await hive.inbox(inbox_owner(owner), limit)

    @app.get("/depths", response_model=DepthsReply)
    async def depths() -> DepthsReply:
        return await hive.depths()

    @app.post("/send", response_model=SendReply)
    async def send(request: Request, body: OperatorSendRequest) -> SendReply:
        return await act(request, "send", body.to, hive.send(body.to, body.body), bytes=len(body.body.encode()))

    @app.get("/harness/{name}", response_model=HarnessState)
    async def harness_state(name: str) -> HarnessState:
        return await hive.harness_state(agent(name))

    @app.post("/harness/{name}/cancel", response_model=HarnessReply)
    async def cancel_turn(request: Request, name: str) -> HarnessReply:
        return await act(request, "cancel-turn", agent(name), hive.harness(agent(name), "cancel", Empty()))

    @app.post("/harness/{name}/compact", response_model=HarnessReply)
    async def compact(request: Request, name: str) -> HarnessReply:
        return await act(request, "compact", agent(name), hive.harness(agent(name), "compact", Empty()))

    @app.post("/harness/{name}/model", response_model=HarnessReply)
    async def model(request: Request, name: str, body: ModelRequest) -> HarnessReply:
        work = hive.harness(agent(name), "model", body)
        return await act(request, "model", agent(name), work, model=body.model)

    @app.post("/harness/{name}/pause", response_model=HarnessReply)
    async def pause(request: Request, name: str, body: PauseRequest) -> HarnessReply:
        work = hive.harness(agent(name), "pause", body)
        return await act(request, "pause" if body.paused else "resume", agent(name), work)

    @app.get("/journal/{name}", response_model=LogsReply)
    async def journal(name: str, lines: int = Query(200, ge=1, le=MAX_JOURNAL_LINES)) -> LogsReply:
        return await hive.journal(agent(name), lines)

    @app.get("/agent-config/{name}", response_class=PlainTextResponse)
    async def agent_config(name: str) -> PlainTextResponse:
        reply = await hive.agent_config(agent(name))
        return PlainTextResponse(reply.agent_nix, headers={"X-Hive-Applied": reply.sha})

    _stats(app, store)

    @app.get("/audit", response_model=list[AuditEntry])
    async def audit(limit: int = Query(100, ge=1, le=1000)) -> list[AuditEntry]:
        return [AuditEntry(**row) for row in await store.audit_log(limit)]

    @app.post("/password", status_code=204, response_class=Response)
    async def change_password(request: Request, body: PasswordChange) -> Response:
        """Set a new password; every session ends, this one too (log in again with the new password)."""
        session = session_of(request.scope)
        assert session is not None
        try:
            check_password(body.new)
        except PasswordError as exc:
            raise HiveError(ErrorCode.INVALID_REQUEST, str(exc)) from None
        if not await asyncio.to_thread(passwords.verify, body.current):
            await store.audit(session.account, "password", ACCOUNT, "refused", session=session.short)
            raise HiveError(ErrorCode.NOT_ALLOWED, "The current password is wrong.")
        await asyncio.to_thread(set_password, state_dir, body.new)
        ended = await store.revoke_all(session.account)
        await store.audit(session.account, "password", ACCOUNT, "ok", session=session.short, sessions_ended=ended)
        response = Response(status_code=204)
        response.delete_cookie(COOKIE, path="/")
        return response

    return app


def _decisions(app: FastAPI, hive: Hive, act: Audited) -> None:
    """Approvals and questions: the operator's decisions."""

    @app.get("/approvals", response_model=ApprovalsReply)
    async def approvals(status: ApprovalStatus | None = None, limit: int = Query(50, ge=1, le=500)) -> ApprovalsReply:
        return await hive.approvals(status, limit)

    @app.post("/approvals/{id}/{verb}", response_model=Approval)
    async def decide(request: Request, id: RowId, verb: Literal["approve", "deny"], body: Note) -> Approval:
        return await act(request, verb, f"approval:{id}", hive.decide(id, verb, body.note), note=body.note)

    @app.get("/questions", response_model=QuestionsReply)
    async def questions(status: QuestionStatus | None = None, limit: int = Query(50, ge=1, le=500)) -> QuestionsReply:
        return await hive.questions(status, limit)

    @app.post("/questions/{id}/answer", response_model=Question)
    async def answer(request: Request, id: RowId, body: Answer) -> Question:
        return await act(request, "answer", f"question:{id}", hive.answer(id, body.choices, body.text))

    @app.post("/questions/{id}/cancel", response_model=Question)
    async def cancel(request: Request, id: RowId) -> Question:
        return await act(request, "cancel", f"question:{id}", hive.cancel_question(id))


def _stats(app: FastAPI, store: Store) -> None:
    """The stats the recorder wrote (`stats.py`): a series bucketed on the server, a family's totals, the top agents.
    Without `agent`, the hive-wide ones; without a window, the last day."""

    async def read(
        agent: str | None, name: str, check: Callable[[str, bool], str], query: Read[R], *window_of: datetime | None
    ) -> R:
        """Check the agent, the name (`check`, for an agent or the hive) and the window, then run `query`."""
        who = stats.agent_of(agent)
        name, window = check(name, who == stats.HIVE), stats.window(*window_of)
        async with store.reading() as conn:
            return await query(conn, who, name, window)

    @app.get("/stats", response_model=stats.StatsSeries)
    async def series(
        key: Annotated[str, Query(max_length=200, description="The series: `turns`, `turn.duration_ms`, …")],
        agent: StatsAgent = None,
        since: Since = None,
        until: Until = None,
    ) -> stats.StatsSeries:
        return await read(agent, key, stats.check_key, stats.series, since, until)

    @app.get("/stats/totals", response_model=stats.StatsTotals)
    async def totals(
        family: Annotated[str, Query(max_length=40, description="`tool`, `turn.exit`, `turn.sent`, `turn.received`")],
        agent: StatsAgent = None,
        since: Since = None,
        until: Until = None,
    ) -> stats.StatsTotals:
        return await read(agent, family, stats.check_family, stats.totals, since, until)

    @app.get("/stats/top", response_model=stats.TopAgents)
    async def top(
        key: Annotated[str, Query(max_length=40, description=f"One of {', '.join(stats.TOP_KEYS)}.")] = "turn.cost_usd",
        limit: Annotated[int, Query(ge=1, le=100)] = 10,
        since: Since = None,
        until: Until = None,
    ) -> stats.TopAgents:
        window = stats.window(since, until)
        async with store.reading() as conn:
            return await stats.top(conn, key, window, limit)
