"""The approver's wiring: manager requests and questions on the agent plane, decisions on the operator plane,
outcomes from the spawner, and deadlines that fire on time (one timer, woken when a nearer deadline appears)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from pydantic import BaseModel

from hive_approver.outbox import Outbox
from hive_approver.store import ACTIONABLE, Outgoing, Store, Then
from hyperhive import bus, events
from hyperhive.backoff import Backoff
from hyperhive.policies import PolicyBook
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    AnswerRequest,
    Approval,
    ApprovalKind,
    ApprovalQueue,
    ApprovalRequest,
    ApprovalResolved,
    ApprovalsReply,
    ApprovalsRequest,
    AskReply,
    AskRequest,
    DecisionRequest,
    Empty,
    Event,
    FreezeReply,
    FreezeRequest,
    OutcomeRequest,
    Question,
    QuestionAnswered,
    QuestionRef,
    QuestionsReply,
    QuestionsRequest,
    SpawnerCommand,
    WaitRequest,
)
from hyperhive.wire.names import MANAGER, OPERATOR, check_agent_name, check_agent_ref

log = logging.getLogger("hive_approver")

KINDS = (*ACTIONABLE, "tool_permission")
NEEDS_COMMIT = ("apply_commit", "spawn_commit")
NEW_AGENT = ("spawn", "spawn_draft")
FREEZE_TIMEOUT = 30.0
OUTAGE_RETRY_SECONDS = 0.5
OUTAGE_RETRY_MAX_SECONDS = 10.0


def _event(kind: str, about: str, data: BaseModel) -> Outgoing:
    """An event for the outbox: stored with the change it reports (`hyperhive.events`)."""
    return Outgoing(events.subject(kind, about), events.envelope(kind, about, data))


def resolved(a: Approval) -> ApprovalResolved:
    return ApprovalResolved(
        id=a.id, kind=a.type, agent=a.agent, requested_by=a.requested_by, status=a.status, note=a.note
    )


@dataclass
class Waiters:
    """The callers waiting for one approval's decision."""

    decided: asyncio.Event = field(default_factory=asyncio.Event)
    count: int = 0


class Approver:
    def __init__(self, nc: Client, js: JetStreamContext, store: Store, agents: PolicyBook, spawner_host: str) -> None:
        self._nc = nc
        self._js = js
        self.store = store
        self.agents = agents
        self._spawner_host = spawner_host
        self.outbox = Outbox(store.outbox, js)
        self._deadline_changed = asyncio.Event()
        # Only approvals someone waits on have an entry; deciding one wakes its waiters and drops it.
        self._decided: dict[int, Waiters] = {}

    @staticmethod
    def _added(a: Approval) -> list[Outgoing]:
        return [_event("approval_added", a.agent, a)]

    def _resolved(self, type_: str = "approval_resolved") -> Then:
        return lambda a: [_event(type_, a.agent, resolved(a))]

    def decided_calls_for(self, a: Approval) -> list[Outgoing]:
        """A decision's event, and its spawner command when it is to be applied: committed with it (the outbox)."""
        calls_for = [_event("approval_resolved", a.agent, resolved(a))]
        return [*calls_for, self._command(a)] if a.status == "applying" else calls_for

    def _command(self, a: Approval) -> Outgoing:
        """The approved action for the spawner's work queue; its id makes a re-publish a no-op."""
        command = SpawnerCommand(approval_id=a.id, action=a.type, agent=a.agent, sha=a.frozen_sha, tag=a.tag)
        return Outgoing(subjects.spawner_cmd(self._spawner_host), bus.encode(command), f"approval-{a.id}")

    @staticmethod
    def _answered(q: Question) -> list[Outgoing]:
        data = QuestionAnswered(id=q.id, asker=q.asker, question=q.question, answer=q.answer or "")
        return [_event("question_answered", q.asker, data)]

    def _wake(self, approval_id: int) -> None:
        if (waiters := self._decided.pop(approval_id, None)) is not None:
            waiters.decided.set()

    async def _queue_changed(self) -> None:
        """Publish what the change called for, then how many approvals wait now (the stats' approval queue)."""
        await self.outbox.flush()
        await self.sample_queue()

    async def sample_queue(self) -> None:
        """`hive.stats.approvals`: a sample lost to an outage is only a missing point; the next change sends one."""
        try:
            pending = await self.store.pending_approvals()
            await self._nc.publish(subjects.APPROVAL_QUEUE, bus.encode(ApprovalQueue(pending=pending)))
        except (HiveError, nats.errors.Error) as exc:
            log.warning("outcome=queue_sample_unsent error=%r", exc)

    # ── agent plane ──

    async def request(self, subject: str, req: ApprovalRequest) -> Approval:
        caller = subjects.caller(subject)
        kind = subjects.verb_of(subject).removeprefix(f"{subjects.REQUEST}.")
        if kind not in KINDS:
            raise HiveError(
                ErrorCode.INVALID_REQUEST, f"There is no request kind {kind!r}; use one of {', '.join(KINDS)}."
            )
        if kind == "tool_permission":
            return await self._tool_permission(caller, req)
        if caller != MANAGER:
            await self.store.audit(caller, f"request.{kind}", req.agent[:40], "refused", reason="not manager")
            log.warning("caller=%s request=%s outcome=refused reason=not_manager", caller, kind)
            raise HiveError(ErrorCode.NOT_MANAGER, f"Only the manager may request {kind}; ask the manager.")
        agent = check_agent_name(req.agent) if kind in NEW_AGENT else check_agent_ref(req.agent)
        if kind in NEW_AGENT and self.agents.exists(agent):
            raise HiveError(ErrorCode.CONFLICT, f"Agent {agent!r} exists already; choose another name.")
        if kind == "apply_commit" and not self.agents.exists(agent):
            raise HiveError(ErrorCode.NOT_FOUND, f"There is no agent {agent!r} to apply a commit to.")
        if kind in NEEDS_COMMIT and req.commit_ref is None:
            raise HiveError(ErrorCode.INVALID_REQUEST, f"{kind} needs commit_ref (7-40 hex characters).")
        approval = await self.store.add_approval(
            agent=agent,
            kind=cast(ApprovalKind, kind),
            requested_by=caller,
            commit_ref=req.commit_ref,
            description=req.description,
            then=None if kind in NEEDS_COMMIT else self._added,  # the operator is told once it can be decided
        )
        if kind in NEEDS_COMMIT:
            approval = await self._freeze(approval)
        await self.store.audit(caller, f"request.{kind}", agent, "pending", approval=approval.id)
        await self._queue_changed()
        return approval

    async def _freeze(self, approval: Approval) -> Approval:
        """Have the spawner tag the commit `proposal/<id>` before the operator sees it: what is approved is exactly
        what is applied, even if the proposed repo moves on."""
        assert approval.commit_ref is not None
        freeze = FreezeRequest(approval_id=approval.id, agent=approval.agent, commit_ref=approval.commit_ref)
        try:
            frozen = await bus.call(
                self._nc, subjects.operator(subjects.SPAWNER, "freeze"), freeze, FreezeReply, timeout=FREEZE_TIMEOUT
            )
        except HiveError as exc:
            await self.store.transition(approval.id, expect=("pending",), to="failed", by="spawner", note=exc.message)
            await self.store.audit(
                "spawner", "freeze", approval.agent, "failed", approval=approval.id, reason=exc.message
            )
            raise HiveError(
                exc.code, f"Cannot freeze {approval.commit_ref} of {approval.agent}: {exc.message}"
            ) from None
        return await self.store.freeze(approval.id, frozen.sha, frozen.tag, frozen.diff, then=self._added)

    async def _tool_permission(self, caller: str, req: ApprovalRequest) -> Approval:
        if not req.tool:
            raise HiveError(ErrorCode.INVALID_REQUEST, "A tool_permission request needs the tool's name.")
        approval = await self.store.add_approval(
            agent=caller,
            kind="tool_permission",
            requested_by=caller,
            description=req.description,
            tool=req.tool,
            input=req.input,
            ttl=timedelta(seconds=req.ttl_seconds),
            then=self._added,
        )
        await self.store.audit(
            caller, "request.tool_permission", caller, "pending", approval=approval.id, tool=req.tool
        )
        self._deadline_changed.set()
        await self._queue_changed()
        return approval

    async def decision(self, subject: str, req: WaitRequest) -> Approval:
        """Wait (up to `wait_seconds`) until the caller's own approval `id` is decided."""
        caller = subjects.caller(subject)
        approval = await self.store.approval(req.id)
        if approval.requested_by != caller:
            raise HiveError(ErrorCode.NOT_FOUND, f"There is no approval #{req.id} of yours.")
        if approval.status == "pending" and req.wait_seconds > 0:
            waiters = self._decided.setdefault(req.id, Waiters())
            waiters.count += 1
            try:
                if (await self.store.approval(req.id)).status == "pending":
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(waiters.decided.wait(), req.wait_seconds)
            finally:
                waiters.count -= 1
                if not waiters.count and self._decided.get(req.id) is waiters:
                    del self._decided[req.id]
            approval = await self.store.approval(req.id)
        return approval

    async def ask(self, subject: str, req: AskRequest) -> AskReply:
        return await self._ask(subjects.caller(subject), req)

    async def tool_ask(self, subject: str, req: AskRequest) -> AskReply:
        """An admitted tool's question (`hivectl tool add --ask`); it reads the answer with `tool_question`."""
        return await self._ask(subjects.tool_sender(subjects.tool_caller(subject)), req)

    async def tool_question(self, subject: str, req: QuestionRef) -> Question:
        """One of the calling tool's own questions, answered or not; another's is not found."""
        q = await self.store.question(req.id)
        if q.asker != subjects.tool_sender(subjects.tool_caller(subject)):
            raise HiveError(ErrorCode.NOT_FOUND, f"There is no question #{req.id} of yours.")
        return q

    async def _ask(self, caller: str, req: AskRequest) -> AskReply:
        q = await self.store.add_question(
            caller,
            req.question,
            req.options,
            req.multi,
            timedelta(seconds=req.ttl_seconds),
            then=lambda q: [_event("question_added", q.asker, q)],
        )
        await self.store.audit(caller, "ask", caller, "pending", question=q.id)
        self._deadline_changed.set()
        await self._queue_changed()
        return AskReply(id=q.id, deadline=q.deadline)

    # ── operator plane ──

    async def approve(self, subject: str, req: DecisionRequest) -> Approval:
        current = await self.store.approval(req.id)
        to = "applying" if current.type in ACTIONABLE else "approved"
        return await self._decide(req, to, "approve")

    async def deny(self, subject: str, req: DecisionRequest) -> Approval:
        return await self._decide(req, "denied", "deny")

    async def _decide(self, req: DecisionRequest, to: str, verb: str) -> Approval:
        try:
            a = await self.store.transition(
                req.id, expect=("pending",), to=to, by=OPERATOR, note=req.note, then=self.decided_calls_for
            )
        except HiveError as exc:
            if exc.code == ErrorCode.CONFLICT and (same := await self._same_decision(req.id, verb)) is not None:
                return same  # the operator's retry of a decision already taken: its outcome, not a conflict
            await self.store.audit(OPERATOR, verb, f"approval:{req.id}", "refused", reason=exc.message)
            raise
        await self.store.audit(OPERATOR, verb, a.agent, a.status, approval=a.id, note=req.note)
        log.info("approval=%d agent=%s outcome=%s", a.id, a.agent, a.status)
        await self._queue_changed()
        self._wake(a.id)
        return a

    async def _same_decision(self, id: int, verb: str) -> Approval | None:
        current = await self.store.approval(id)
        outcomes = ("approved", "applying", "deployed", "failed") if verb == "approve" else ("denied",)
        return current if current.resolved_by == OPERATOR and current.status in outcomes else None

    async def outcome(self, subject: str, req: OutcomeRequest) -> Approval:
        to = "deployed" if req.ok else "failed"
        a = await self.store.transition(
            req.approval_id,
            expect=("applying",),
            to=to,
            by="spawner",
            note=req.reason or None,
            resolve=False,
            then=self._resolved("approval_applied"),
        )
        await self.store.audit("spawner", "apply", a.agent, to, approval=a.id, reason=req.reason)
        await self.outbox.flush()
        return a

    async def approvals(self, subject: str, req: ApprovalsRequest) -> ApprovalsReply:
        return ApprovalsReply(approvals=await self.store.approvals(req.status, req.limit))

    async def answer(self, subject: str, req: AnswerRequest) -> Question:
        q = await self.store.question(req.id)
        if bool(req.choices) == bool(req.text):
            raise HiveError(ErrorCode.INVALID_REQUEST, "Answer with choices or with text, not both and not neither.")
        if req.choices:
            unknown = [c for c in req.choices if c not in q.options]
            if unknown:
                raise HiveError(ErrorCode.INVALID_REQUEST, f"{unknown[0]!r} is not an option of question #{q.id}.")
            if len(req.choices) > 1 and not q.multi:
                raise HiveError(ErrorCode.INVALID_REQUEST, f"Question #{q.id} takes one choice.")
        answer = ", ".join(req.choices) if req.choices else (req.text or "")
        return await self._settle_question(req.id, "answered", answer, "answer")

    async def cancel(self, subject: str, req: QuestionRef) -> Question:
        return await self._settle_question(req.id, "cancelled", "[cancelled]", "cancel")

    async def _settle_question(self, id: int, status: str, answer: str, verb: str) -> Question:
        try:
            q = await self.store.settle_question(id, status=status, answer=answer, by=OPERATOR, then=self._answered)
        except HiveError as exc:
            await self.store.audit(OPERATOR, verb, f"question:{id}", "refused", reason=exc.message)
            raise
        await self.store.audit(OPERATOR, verb, q.asker, q.status, question=q.id)
        await self.outbox.flush()
        return q

    async def questions(self, subject: str, req: QuestionsRequest) -> QuestionsReply:
        return QuestionsReply(questions=await self.store.questions(req.status, req.limit))

    # ── background ──

    async def deadlines(self) -> None:
        """Settle whatever is due, then sleep until the next deadline or until a nearer one is added.
        A deadline that passed while the approver (or its database) was down fires at the first pass after, in
        deadline order; a database outage is waited out with back-off, never a reason to stop."""
        backoff = Backoff(OUTAGE_RETRY_SECONDS, OUTAGE_RETRY_MAX_SECONDS)
        while True:
            try:
                await self._settle_due()
                backoff.succeeded()
            except HiveError as exc:
                if exc.code != ErrorCode.UNAVAILABLE:
                    raise
                delay = backoff.failed()
                log.warning("task=deadlines outcome=database_unavailable retry_in=%.1fs error=%s", delay, exc.message)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._deadline_changed.wait(), delay)

    async def _settle_due(self) -> None:
        """One pass: settle what is due, then wait for the next deadline (or a nearer one being added)."""
        self._deadline_changed.clear()
        approvals, questions = await self.store.expire_due(self._resolved(), self._answered)
        await (self._queue_changed() if approvals else self.outbox.flush())
        for a in approvals:
            await self.store.audit("deadline", "expire", a.agent, a.status, approval=a.id)
            self._wake(a.id)
        for q in questions:
            await self.store.audit("deadline", "expire", q.asker, q.status, question=q.id)
        due = await self.store.next_deadline()
        timeout = None if due is None else max(0.0, (due - datetime.now(UTC)).total_seconds())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._deadline_changed.wait(), timeout)

    async def resume_commands(self) -> None:
        """Re-publish commands of approvals that were approved but not yet applied — the backstop for decisions the
        outbox does not hold (taken before it existed, or written by hand); the work queue drops the duplicates."""
        for a in await self.store.applying():
            command = self._command(a)
            await self._js.publish(command.subject, command.body, headers={"Nats-Msg-Id": command.msg_id or ""})

    async def follow_decisions(self) -> None:
        """Wake local `decision` waiters when another replica decides."""

        async def wake(msg: Msg) -> None:
            try:
                self._wake(ApprovalResolved.model_validate(Event.model_validate_json(msg.data).data).id)
            except ValueError:
                log.warning("subject=%s outcome=malformed_event", msg.subject)

        await self._nc.subscribe(f"{subjects.EVENTS_PREFIX}.approval_resolved.>", cb=wake)

    def endpoints(self) -> list[bus.Endpoint[Any]]:
        approver = subjects.APPROVER
        return [
            bus.agent_verb(f"{subjects.REQUEST}.*", ApprovalRequest, self.request),
            bus.agent_verb(subjects.DECISION, WaitRequest, self.decision),
            bus.agent_verb(subjects.ASK, AskRequest, self.ask),
            bus.tool_verb(subjects.ASK, AskRequest, self.tool_ask),
            bus.tool_verb("question", QuestionRef, self.tool_question),
            bus.operator_verb(approver, "approve", DecisionRequest, self.approve),
            bus.operator_verb(approver, "deny", DecisionRequest, self.deny),
            bus.operator_verb(approver, "outcome", OutcomeRequest, self.outcome),
            bus.operator_verb(approver, "approvals", ApprovalsRequest, self.approvals),
            bus.operator_verb(approver, "answer", AnswerRequest, self.answer),
            bus.operator_verb(approver, "cancel", QuestionRef, self.cancel),
            bus.operator_verb(approver, "questions", QuestionsRequest, self.questions),
        ]


__all__ = ["Approver", "Empty"]
