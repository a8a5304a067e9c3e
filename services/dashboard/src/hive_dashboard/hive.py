"""The hive as the dashboard reaches it: operator-plane calls to the broker, approver, spawner and harnesses, made
over NATS as the dashboard's own principal, each answered with a wire model; and the home page's snapshot."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api
from pydantic import BaseModel, Field, ValidationError

from hive_dashboard import live
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    AgentConfigReply,
    AgentRequest,
    AgentsReply,
    AgentStatus,
    AnswerRequest,
    Approval,
    ApprovalsReply,
    ApprovalsRequest,
    DecisionRequest,
    DepthsReply,
    Empty,
    Event,
    HarnessReply,
    HarnessState,
    InboxReply,
    InboxRequest,
    LogsReply,
    LogsRequest,
    OperatorSendRequest,
    Question,
    QuestionRef,
    QuestionsReply,
    QuestionsRequest,
    SendReply,
)
from hyperhive.wire.names import OPERATOR

log = logging.getLogger("hive_dashboard.hive")

R = TypeVar("R", bound=BaseModel)
LIFECYCLE_VERBS = ("start", "stop", "restart", "destroy", "revive", "purge")
HARNESS_VERBS = ("cancel", "compact", "model", "pause")
TIMEOUT = 10.0
LIFECYCLE_TIMEOUT = 120.0  # a start builds a container: as long as hivectl waits


class AgentRow(BaseModel):
    """One agent on the home page: what the spawner says of it, what its harness last said, its inbox depth."""

    name: str
    status: AgentStatus
    harness: HarnessState | None = Field(None, description="The harness's last `turn_state`, if it ever sent one.")
    depth: int = Field(0, description="Messages in its inbox it has not acknowledged.")


class Snapshot(BaseModel):
    """Everything the home page shows, as of HIVE_EVENTS sequence `as_of`: apply the events after it."""

    as_of: int
    agents: list[AgentRow]
    approvals: list[Approval]
    questions: list[Question]
    inbox: InboxReply | None
    problems: list[str] = Field(default_factory=list, description="What could not be read (a service is away).")


class Hive:
    def __init__(self, nc: Client, js: JetStreamContext) -> None:
        self.nc = nc
        self.js = js

    async def _call(self, service: str, verb: str, request: BaseModel, reply: type[R], timeout: float = TIMEOUT) -> R:
        return await bus.call(self.nc, subjects.operator(service, verb), request, reply, timeout)

    # ── spawner ──
    async def agents(self) -> AgentsReply:
        return await self._call(subjects.SPAWNER, "agents", Empty(), AgentsReply)

    async def lifecycle(self, agent: str, verb: str) -> AgentStatus:
        if verb not in LIFECYCLE_VERBS:
            raise HiveError(
                ErrorCode.INVALID_REQUEST, f"There is no agent verb {verb!r}; use {', '.join(LIFECYCLE_VERBS)}."
            )
        return await self._call(subjects.SPAWNER, verb, AgentRequest(agent=agent), AgentStatus, LIFECYCLE_TIMEOUT)

    async def journal(self, agent: str, lines: int) -> LogsReply:
        return await self._call(subjects.SPAWNER, "logs", LogsRequest(agent=agent, lines=lines), LogsReply)

    async def agent_config(self, agent: str) -> AgentConfigReply:
        return await self._call(subjects.SPAWNER, "agent-config", AgentRequest(agent=agent), AgentConfigReply)

    # ── approver ──
    async def approvals(self, status: Any = None, limit: int = 50) -> ApprovalsReply:
        return await self._call(
            subjects.APPROVER, "approvals", ApprovalsRequest(status=status, limit=limit), ApprovalsReply
        )

    async def decide(self, id: int, verb: str, note: str | None) -> Approval:
        return await self._call(subjects.APPROVER, verb, DecisionRequest(id=id, note=note), Approval)

    async def questions(self, status: Any = None, limit: int = 50) -> QuestionsReply:
        return await self._call(
            subjects.APPROVER, "questions", QuestionsRequest(status=status, limit=limit), QuestionsReply
        )

    async def answer(self, id: int, choices: list[str], text: str | None) -> Question:
        return await self._call(subjects.APPROVER, "answer", AnswerRequest(id=id, choices=choices, text=text), Question)

    async def cancel_question(self, id: int) -> Question:
        return await self._call(subjects.APPROVER, "cancel", QuestionRef(id=id), Question)

    # ── broker ──
    async def send(self, to: str, body: str) -> SendReply:
        return await self._call(subjects.BROKER, "send", OperatorSendRequest(to=to, body=body), SendReply)

    async def inbox(self, owner: str, limit: int = 50) -> InboxReply:
        return await self._call(subjects.BROKER, "inbox", InboxRequest(owner=owner, limit=limit), InboxReply)

    async def depths(self) -> DepthsReply:
        return await self._call(subjects.BROKER, "depths", Empty(), DepthsReply)

    # ── harness ──
    async def harness_state(self, agent: str) -> HarnessState:
        return await bus.call(self.nc, subjects.harness(agent, "state"), Empty(), HarnessState, TIMEOUT)

    async def harness(self, agent: str, verb: str, request: BaseModel) -> HarnessReply:
        if verb not in HARNESS_VERBS:
            raise HiveError(
                ErrorCode.INVALID_REQUEST, f"There is no harness verb {verb!r}; use {', '.join(HARNESS_VERBS)}."
            )
        return await bus.call(self.nc, subjects.harness(agent, verb), request, HarnessReply, TIMEOUT)

    async def last_turn_states(self) -> dict[str, HarnessState]:
        """What every agent's harness last said of itself, from HIVE_EVENTS (no harness has to answer): one
        consumer that delivers the last message of each agent's `turn_state` subject, not a request per agent."""
        where = f"{subjects.AGENT_PREFIX}.*.event.turn_state"
        info = await self.js.stream_info(subjects.EVENTS_STREAM, subjects_filter=where)
        count = len(info.state.subjects or {})
        found: dict[str, HarnessState] = {}
        if not count:
            return found
        sub = await self.js.subscribe(
            where, ordered_consumer=True, deliver_policy=js_api.DeliverPolicy.LAST_PER_SUBJECT
        )
        try:
            for _ in range(count):
                msg = await sub.next_msg(timeout=TIMEOUT)
                try:
                    state = HarnessState.model_validate(Event.model_validate_json(msg.data).data)
                except ValidationError:
                    log.warning("subject=%s outcome=unreadable_turn_state", msg.subject)
                    continue
                found[state.agent] = state
        finally:
            await sub.unsubscribe()
        return found

    # ── the home page ──
    async def snapshot(self) -> Snapshot:
        """Read `as_of` first, then the rest: whatever changes meanwhile comes again as an event after `as_of`, and
        applying an event twice leaves a row as once (events set state, they do not count)."""
        as_of = await live.as_of(self.js)
        problems: list[str] = []
        agents, depths, approvals, questions, inbox = await asyncio.gather(
            _or_none(self.agents(), problems, "agents"),
            _or_none(self.depths(), problems, "inbox depths"),
            _or_none(self.approvals("pending", 200), problems, "approvals"),
            _or_none(self.questions("pending", 200), problems, "questions"),
            _or_none(self.inbox(OPERATOR, 50), problems, "the operator's inbox"),
        )
        statuses = agents.agents if agents else []
        harnesses = await self.last_turn_states() if statuses else {}
        counts = depths.depths if depths else {}
        rows = [
            AgentRow(name=a.name, status=a, harness=harnesses.get(a.name), depth=counts.get(a.name, 0))
            for a in statuses
        ]
        return Snapshot(
            as_of=as_of,
            agents=rows,
            approvals=approvals.approvals if approvals else [],
            questions=questions.questions if questions else [],
            inbox=inbox,
            problems=problems,
        )


async def _or_none(call: Awaitable[R], problems: list[str], what: str) -> R | None:
    """A part of the snapshot a service could not give: the page shows the rest and says what is missing."""
    try:
        return await call
    except HiveError as exc:
        problems.append(f"Cannot read {what}: {exc.message}")
        return None
    except nats.errors.Error as exc:
        problems.append(f"Cannot read {what}: {exc!r}")
        return None
