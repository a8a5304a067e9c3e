"""Wire models: every request, reply, event and stored record that crosses NATS.

Each model carries a versioned `kind`, documents its fields, and ignores fields it does not know, so a newer peer
can add fields without breaking an older one.

It is one module, longer than most, on purpose: the wire contract is read as one document (and docs/wire.md is
generated from it), so every model is found in one place.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hyperhive.wire.names import AgentRef, Party, Recipient

MAX_BODY_BYTES = 64 * 1024
"""The largest message body `send` accepts, in UTF-8 bytes."""
MAX_RECV_WAIT_SECONDS = 180
MAX_RECV_BATCH = 32
MESSAGE_ID_PATTERN = r"^[A-Za-z0-9_-]{8,64}$"
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@\[\]-]{0,99}$"  # never an option: it goes to the CLI's --model


class WireModel(BaseModel):
    """Built on first use (`defer_build`): an agent's harness uses a dozen of these models, and building all of them
    was a fifth of its start (docs/PERFORMANCE.md). A process that reads their schemas itself builds them first
    (`build_all`)."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True, defer_build=True)


def build_all() -> None:
    """Build every wire model now, those defined elsewhere on top of these included, and no longer defer what is
    made of them. FastAPI makes a `TypeAdapter` of each route's body and reply, which would defer too, because the
    model says so, and build later, outside the place where FastAPI silences pydantic's warning about its alias."""
    models: list[type[BaseModel]] = [WireModel]
    while models:
        model = models.pop()
        model.model_config["defer_build"] = False
        model.model_rebuild()
        models += model.__subclasses__()


MAX_ROW_ID = 2**63 - 1  # PostgreSQL's bigint: approval and question ids
RowId = Annotated[int, Field(ge=0, le=MAX_ROW_ID)]


def _nul_in(value: Any, where: str) -> str | None:
    """Where in `value` a NUL character is, if anywhere (through lists and dicts, keys included)."""
    if isinstance(value, str):
        return where if "\x00" in value else None
    if isinstance(value, list | tuple):
        return next((w for i, v in enumerate(value) if (w := _nul_in(v, f"{where}[{i}]"))), None)
    if isinstance(value, dict):
        for key, v in value.items():
            if found := _nul_in(key, f"{where} key") or _nul_in(v, f"{where}.{key}"):
                return found
    return None


class WireRequest(WireModel):
    """What a caller sends. Text in it may hold no NUL character, anywhere: PostgreSQL cannot store one, and a
    process argument cannot carry one, so it is refused at the wire rather than failing deep inside a service."""

    @model_validator(mode="after")
    def _no_nul(self) -> Self:
        for name, value in self:
            if where := _nul_in(value, name):
                raise ValueError(f"{where} contains a NUL character (\\x00), which the hive does not accept")
        return self


# ── agent plane: broker ──────────────────────────────────────────────────────


class SendRequest(WireRequest):
    """`hive.agent.<name>.send` (and a tool's `hive.tool.<name>.send`): deliver `body` to `to`. The sender is the
    subject's `<name>`."""

    kind: Literal["hive.send.v1"] = "hive.send.v1"
    to: Recipient = Field(description="An agent, `manager`, `operator`, or `*` for every other agent.")
    body: str = Field(description=f"Non-empty text, at most {MAX_BODY_BYTES} bytes of UTF-8.")
    id: str | None = Field(
        None,
        pattern=MESSAGE_ID_PATTERN,
        description="Caller-chosen message id, so a retried send is delivered once; made up when absent.",
    )


class SendReply(WireModel):
    kind: Literal["hive.send.reply.v1"] = "hive.send.reply.v1"
    id: str = Field(description="The message id; a broadcast shares one id across its recipients.")
    recipients: list[str] = Field(description="Who the message was queued for.")


class Message(WireModel):
    """One message as an agent (or the operator) receives it."""

    kind: Literal["hive.message.v1"] = "hive.message.v1"
    id: str = Field(description="The id `send` returned.")
    sender: str = Field(alias="from", description="An agent, `operator`, `system`, or `tool:<name>`.")
    to: str = Field(description="The recipient as the sender addressed it (`*` for a broadcast).")
    body: str
    sent_at: datetime
    broadcast: bool = Field(False, description="True when the sender addressed every agent.")
    redelivered: bool = Field(False, description="True when an earlier delivery was not acknowledged.")
    token: str = Field("", description="Delivery token to pass back in `recv.ack` (empty in stored copies).")
    seq: int = Field(0, description="Position in the inbox stream; events about this message carry it too.")


# ── operator plane: broker ───────────────────────────────────────────────────


class OperatorSendRequest(WireRequest):
    """`hive.broker.send`: the operator writes to an agent (or `*`)."""

    kind: Literal["hive.broker.send.v1"] = "hive.broker.send.v1"
    to: Recipient
    body: str


class InboxRequest(WireRequest):
    """`hive.broker.inbox`: recent messages of one inbox (an agent's, or `operator`)."""

    kind: Literal["hive.broker.inbox.v1"] = "hive.broker.inbox.v1"
    owner: str = Field(description="An agent name, or `operator` for the operator's inbox.")
    limit: int = Field(50, ge=1, le=500)


class InboxEntry(WireModel):
    message: Message
    state: Literal["pending", "delivered"] = Field(
        description="`delivered` once acknowledged by the recipient's harness."
    )


class InboxReply(WireModel):
    kind: Literal["hive.broker.inbox.reply.v1"] = "hive.broker.inbox.reply.v1"
    owner: str
    entries: list[InboxEntry]
    pending: int


class DepthsReply(WireModel):
    """`hive.broker.depths`: unacknowledged messages per inbox."""

    kind: Literal["hive.broker.depths.reply.v1"] = "hive.broker.depths.reply.v1"
    depths: dict[str, int]


class Empty(WireModel):
    kind: Literal["hive.empty.v1"] = "hive.empty.v1"


# ── policy (JetStream KV `hive-policy`, written by the spawner) ──────────────


class McpServer(WireModel):
    command: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    allowed_tools: list[str] = Field(default_factory=list, alias="allowedTools")


class BashPolicy(WireModel):
    """Patterns over whole commands (`git status`, `git log *`, `nix build .#*`; `>` allows writing redirections),
    checked by the harness; the grammar is in the agent.nix template."""

    allow: list[str] = Field(default_factory=list, description="Commands that run (each pattern is a whole command).")
    deny: list[str] = Field(default_factory=list, description="Commands that never run (any that starts so).")
    ask: list[str] = Field(default_factory=list, description="Commands the operator decides (any that starts so).")


class AgentPolicy(WireModel):
    """An agent's applied policy, evaluated from its applied agent.nix; the broker and harness read it."""

    kind: Literal["hive.policy.v1"] = "hive.policy.v1"
    agent: AgentRef
    model: str = Field("claude-sonnet-4-5", pattern=MODEL_PATTERN)
    allowed_recipients: list[Recipient] = Field(
        default_factory=list,
        alias="allowedRecipients",
        description="Who this agent may send to; `operator` only when listed. The manager may send anywhere.",
    )
    allowed_bash: BashPolicy = Field(default_factory=BashPolicy, alias="allowedBash")
    mcp_servers: dict[str, McpServer] = Field(default_factory=dict, alias="mcpServers")
    notes_threshold: int = Field(16 * 1024, alias="notesThreshold")
    accept_tools: bool = Field(
        True, alias="acceptTools", description="Take messages from the tools the operator admitted (`tool:<name>`)."
    )


# ── events (JetStream stream HIVE_EVENTS) ────────────────────────────────────


class Event(WireModel):
    """Envelope of everything published on `hive.events.>` and `hive.agent.<name>.event.>`."""

    kind: Literal["hive.event.v1"] = "hive.event.v1"
    type: str = Field(description="What happened: `message_refused`, `message_delivered`, `approval_added`, …")
    agent: str | None = Field(None, description="The agent it concerns, when there is one.")
    at: datetime
    data: Annotated[dict[str, Any], Field(default_factory=dict)]


class PoisonMessage(WireModel):
    """`poison_message`: a stored message its consumer could not read was set aside (terminated, never redelivered)
    so that the consumer goes on; the record says where it was, to look at it with the `nats` CLI."""

    stream: str
    seq: int
    subject: str
    consumer: str
    error: str = Field(description="Why it could not be read or handled (the first line of the error).")


class MessageRefused(WireModel):
    """`message_refused`: a send was refused by the recipient policy (an audit record)."""

    sender: str = Field(alias="from")
    to: str
    reason: str


class ToolMessage(WireModel):
    """`tool_message`: a tool's message was stored for its recipients (the audit record of every tool message)."""

    tool: str
    id: str
    to: str
    recipients: list[str]
    bytes: int


class MessageDelivered(WireModel):
    """`message_delivered` (on `hive.agent.<owner>.event.message_delivered`): a harness acknowledged messages."""

    owner: str
    seqs: list[int] = Field(description="Inbox stream sequences of the acknowledged messages.")


class ApprovalResolved(WireModel):
    """`approval_resolved`: the operator (or a deadline) decided an approval."""

    id: RowId
    kind: str
    agent: str = Field(description="The agent the approval is about.")
    requested_by: str
    status: str
    note: str | None = None


class QuestionAnswered(WireModel):
    """`question_answered`: an operator question got its answer (or `[expired]`, `[cancelled]`)."""

    id: RowId
    asker: str
    question: str
    answer: str


class ContainerCrash(WireModel):
    """`container_crash`: an agent's container stopped without being asked to."""

    agent: str
    exit_code: int | None = None
    reason: str = ""


class AgentStarted(WireModel):
    """`agent_started`: an agent's container (re)started; its harness will wake it."""

    agent: str
    restarted: bool = False


# ── approvals and questions (approver) ───────────────────────────────────────

ApprovalKind = Literal["apply_commit", "spawn", "spawn_draft", "spawn_commit", "tool_permission"]
ApprovalStatus = Literal["pending", "approved", "denied", "applying", "deployed", "failed", "expired", "cancelled"]
COMMIT_REF_PATTERN = r"^[0-9a-f]{7,40}$"
MAX_QUESTION_TTL_SECONDS = 6 * 3600
MAX_TOOL_PERMISSION_TTL_SECONDS = 3600


class ApprovalRequest(WireRequest):
    """`hive.agent.<name>.request.<kind>`: ask the operator to approve a change. Only the manager may, except for
    `tool_permission`, which any agent's harness asks for itself."""

    kind: Literal["hive.request.v1"] = "hive.request.v1"
    agent: str = Field(description="The agent the change is about (for `tool_permission`: ignored, the caller).")
    commit_ref: str | None = Field(
        None, pattern=COMMIT_REF_PATTERN, description="7-40 lowercase hex; for apply_commit and spawn_commit."
    )
    description: str = Field("", max_length=4000, description="What and why, for the operator.")
    tool: str | None = Field(None, max_length=200, description="tool_permission: the tool the model wants to call.")
    input: dict[str, Any] = Field(default_factory=dict, description="tool_permission: the tool call's input.")
    ttl_seconds: int = Field(
        300, ge=1, le=MAX_TOOL_PERMISSION_TTL_SECONDS, description="tool_permission: denied when not decided by then."
    )


class Approval(WireModel):
    """An approval as the operator sees it."""

    kind: Literal["hive.approval.v1"] = "hive.approval.v1"
    id: RowId
    agent: str
    type: ApprovalKind = Field(description="What is to be approved.")
    commit_ref: str | None = None
    frozen_sha: str | None = Field(None, description="The exact commit that will be applied.")
    tag: str | None = Field(
        None, description="`proposal/<id>`: the frozen commit's tag, in the spawner's applied repo."
    )
    diff: str | None = Field(None, description="The frozen commit against what is applied.")
    description: str = ""
    tool: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    requested_by: str
    requested_at: datetime
    status: ApprovalStatus
    resolved_at: datetime | None = None
    resolved_by: str | None = None
    note: str | None = None
    deadline: datetime | None = None
    default_action: Literal["approve", "deny"] | None = None


class DecisionRequest(WireRequest):
    """`hive.approver.approve` / `hive.approver.deny`: the operator decides."""

    kind: Literal["hive.decision.v1"] = "hive.decision.v1"
    id: RowId
    note: str | None = Field(None, max_length=4000)


class ApprovalsRequest(WireRequest):
    """`hive.approver.approvals`: list approvals, newest first."""

    kind: Literal["hive.approvals.v1"] = "hive.approvals.v1"
    status: ApprovalStatus | None = None
    limit: int = Field(50, ge=1, le=500)


class ApprovalsReply(WireModel):
    kind: Literal["hive.approvals.reply.v1"] = "hive.approvals.reply.v1"
    approvals: list[Approval]


class WaitRequest(WireRequest):
    """`hive.agent.<name>.decision`: wait until one of the caller's approvals is decided."""

    kind: Literal["hive.decision.wait.v1"] = "hive.decision.wait.v1"
    id: RowId
    wait_seconds: float = Field(0, ge=0, le=MAX_RECV_WAIT_SECONDS)


class SlotRequest(WireRequest):
    """`hive.agent.<name>.slot`: take one of the host's turn slots before running the claude CLI (waiting up to
    `wait_seconds` for one to be free), or give it back (`release`). An agent holds at most one: asking again while
    holding it is granted at once, so no agent can take more than its share."""

    kind: Literal["hive.slot.v1"] = "hive.slot.v1"
    release: bool = False
    wait_seconds: float = Field(60, ge=0, le=MAX_RECV_WAIT_SECONDS)


class SlotReply(WireModel):
    kind: Literal["hive.slot.reply.v1"] = "hive.slot.reply.v1"
    granted: bool = Field(description="The caller holds a slot now (false: none came free in time, or released).")
    held: int = Field(description="How many of the host's slots are held.")
    limit: int = Field(description="How many turns run at once on this host (`HIVE_TURN_SLOTS`).")


class FreezeRequest(WireRequest):
    """`hive.spawner.freeze`: tag the proposed commit as `proposal/<approval_id>` and diff it against applied."""

    kind: Literal["hive.spawner.freeze.v1"] = "hive.spawner.freeze.v1"
    approval_id: RowId
    agent: str
    commit_ref: str


class FreezeReply(WireModel):
    kind: Literal["hive.spawner.freeze.reply.v1"] = "hive.spawner.freeze.reply.v1"
    sha: str
    tag: str
    diff: str


class SpawnerCommand(WireModel):
    """On the work queue `hive.spawner.cmd.<host>`: apply an approved change, once (deduplicated by approval id)."""

    kind: Literal["hive.spawner.command.v1"] = "hive.spawner.command.v1"
    approval_id: RowId
    action: Literal["apply_commit", "spawn", "spawn_draft", "spawn_commit"]
    agent: AgentRef
    sha: str | None = None
    tag: str | None = None


class OutcomeRequest(WireRequest):
    """`hive.approver.outcome`: the spawner reports how applying an approval went."""

    kind: Literal["hive.approver.outcome.v1"] = "hive.approver.outcome.v1"
    approval_id: RowId
    ok: bool
    reason: str = ""


class AskRequest(WireRequest):
    """`hive.agent.<name>.ask`: a question for the operator; the answer comes back as a system message."""

    kind: Literal["hive.ask.v1"] = "hive.ask.v1"
    question: str = Field(min_length=1, max_length=4000)
    options: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default_factory=list, max_length=20)
    multi: bool = Field(False, description="The operator may pick several options.")
    ttl_seconds: int = Field(3600, ge=1, le=MAX_QUESTION_TTL_SECONDS, description="Answered `[expired]` after this.")


class AskReply(WireModel):
    kind: Literal["hive.ask.reply.v1"] = "hive.ask.reply.v1"
    id: RowId
    deadline: datetime


class Question(WireModel):
    kind: Literal["hive.question.v1"] = "hive.question.v1"
    id: RowId
    asker: str
    question: str
    options: list[str]
    multi: bool
    asked_at: datetime
    deadline: datetime
    status: Literal["pending", "answered", "expired", "cancelled"]
    answer: str | None = None
    answered_at: datetime | None = None


class AnswerRequest(WireRequest):
    """`hive.approver.answer`: pick options (several only when `multi`) or write free text."""

    kind: Literal["hive.answer.v1"] = "hive.answer.v1"
    id: RowId
    choices: list[str] = Field(default_factory=list, max_length=20)
    text: str | None = Field(None, max_length=4000)


class QuestionRef(WireRequest):
    """`hive.approver.cancel`: withdraw a question (answered `[cancelled]`)."""

    kind: Literal["hive.question.ref.v1"] = "hive.question.ref.v1"
    id: RowId


class QuestionsRequest(WireRequest):
    kind: Literal["hive.questions.v1"] = "hive.questions.v1"
    status: Literal["pending", "answered", "expired", "cancelled"] | None = None
    limit: int = Field(50, ge=1, le=500)


class QuestionsReply(WireModel):
    kind: Literal["hive.questions.reply.v1"] = "hive.questions.reply.v1"
    questions: list[Question]


# ── agents (spawner) ─────────────────────────────────────────────────────────

AgentState = Literal["draft", "running", "stopped", "crashed", "destroyed"]


class AgentStatus(WireModel):
    """One agent as the spawner sees it."""

    kind: Literal["hive.agent.status.v1"] = "hive.agent.status.v1"
    name: str
    state: AgentState = Field(
        description="`draft`: repos only; `crashed`: it stopped without being asked to; `destroyed`: a tombstone "
        "(state and applied config kept) to revive or purge."
    )
    applied: str | None = Field(None, description="The applied commit of its config.")
    uid: int | None = Field(None, description="Its host uid (local backend).")


class AgentsReply(WireModel):
    kind: Literal["hive.agents.reply.v1"] = "hive.agents.reply.v1"
    agents: list[AgentStatus]


class ToolGrant(WireRequest):
    """A tool — a CI job, a cron script, a monitor — that the operator admitted: `hive.spawner.tool-add` takes it
    (again: its grants and key replaced), KV `hive-tools` keeps it for the broker, `hive.spawner.tools` lists it.
    The tool holds the seed of `public_key` and publishes only `hive.tool.<name>.send` (and `.ask`, `.question` when
    `ask`); its messages are from `tool:<name>`."""

    kind: Literal["hive.tool.v1"] = "hive.tool.v1"
    name: AgentRef = Field(description="The hive's name rule; never an agent's name.")
    public_key: str = Field(
        pattern=r"^U[A-Z2-7]{55}$", description="Its NATS user nkey (`U…`); the seed stays with it."
    )
    send: list[Recipient] = Field(
        default_factory=list, max_length=100, description="Whom it may send to: agents, `manager`, `operator`."
    )
    broadcast: bool = Field(False, description="It may send to `*` (every agent that takes messages from tools).")
    ask: bool = Field(False, description="It may ask the operator questions, and read their answers.")

    @property
    def verbs(self) -> tuple[str, ...]:
        return ("send", "ask", "question") if self.ask else ("send",)


class ToolRequest(WireRequest):
    """`hive.spawner.tool-revoke`: cut a tool off (its connections closed at once) and forget it."""

    kind: Literal["hive.tool.request.v1"] = "hive.tool.request.v1"
    name: AgentRef


class ToolsReply(WireModel):
    """`hive.spawner.tools`: every admitted tool."""

    kind: Literal["hive.tools.reply.v1"] = "hive.tools.reply.v1"
    tools: list[ToolGrant]


class AgentRequest(WireRequest):
    """`hive.spawner.<verb>` (operator) and `hive.agent.manager.lifecycle.<verb>` (the manager): act on one agent."""

    kind: Literal["hive.agent.request.v1"] = "hive.agent.request.v1"
    agent: AgentRef


class LogsRequest(WireRequest):
    """`hive.spawner.logs`: the last lines of an agent's journal."""

    kind: Literal["hive.logs.v1"] = "hive.logs.v1"
    agent: AgentRef
    lines: int = Field(100, ge=1, le=2000)


class LogsReply(WireModel):
    kind: Literal["hive.logs.reply.v1"] = "hive.logs.reply.v1"
    agent: str
    lines: list[str]


class AgentConfigReply(WireModel):
    """`hive.spawner.agent-config`: an agent's applied agent.nix."""

    kind: Literal["hive.agent.config.reply.v1"] = "hive.agent.config.reply.v1"
    agent: str
    sha: str
    agent_nix: str


class AgentDestroyed(WireModel):
    """`agent_destroyed`: an agent became a tombstone; its credential no longer works."""

    agent: str


class LifecycleRefused(WireModel):
    """`lifecycle_refused`: an agent that is not the manager asked to start, stop or restart one (an audit record)."""

    caller: str
    agent: str
    verb: str


Transient = Literal["spawning", "starting", "stopping", "restarting", "rebuilding", "destroying", "reviving"]


class AgentTransient(WireModel):
    """`agent_transient`: the spawner began something that takes a while (the dashboard shows a spinner)."""

    agent: str
    transient: Transient


class AgentStateChanged(WireModel):
    """`agent_state`: an agent's state after a lifecycle step or an unexpected exit."""

    agent: str
    state: AgentState


# ── turns (harness) ──────────────────────────────────────────────────────────

ExitClass = Literal["ok", "api_error", "prompt_too_long", "rate_limited", "needs_login", "cancelled", "crashed"]


class TurnStats(WireModel):
    """`hive.agent.<name>.stats`: one turn's figures, published by the harness when the turn ends."""

    kind: Literal["hive.turn.stats.v1"] = "hive.turn.stats.v1"
    agent: str
    model: str
    started_at: datetime
    duration_ms: int
    exit_class: ExitClass
    tool_calls: dict[str, int] = Field(default_factory=dict, description="Calls per tool name.")
    permission_denials: int = 0
    bash_denied: int = Field(0, description="Bash and Monitor calls the harness's checker refused.")
    cost_usd: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    messages: int = Field(0, description="Inbox messages that woke this turn.")
    inbox_depth: int = Field(0, description="Messages in the inbox when the turn began: those it took, and the rest.")
    received: dict[Party, int] = Field(
        default_factory=dict, description="Messages the turn read (woken with, or by `recv`), per sender's party."
    )
    sent: dict[Party, int] = Field(
        default_factory=dict, description="Messages the turn sent, per recipient's party (a broadcast is `peer`)."
    )
    notes_bytes: int = Field(0, description="The size of /state/notes.md when the turn ended.")


class NotesCompacted(WireModel):
    """`hive.agent.<name>.stats`: the harness rewrote /state/notes.md because it outgrew the agent's threshold."""

    kind: Literal["hive.notes.compacted.v1"] = "hive.notes.compacted.v1"
    agent: str
    at: datetime
    before_bytes: int
    after_bytes: int = Field(description="Equal to `before_bytes` when the compaction failed (notes untouched).")
    duration_ms: int
    ok: bool
    reason: str = Field("", description="Why a compaction failed.")


DEPTHS_PER_SAMPLE = 100  # inboxes in one `InboxDepths`: more go in more samples


class ApprovalQueue(WireModel):
    """`hive.stats.approvals`: how many approvals wait for the operator, published by the approver at each change."""

    kind: Literal["hive.approvals.queue.v1"] = "hive.approvals.queue.v1"
    pending: int


class InboxDepths(WireModel):
    """`hive.stats.inboxes`: messages not yet acknowledged, per inbox, published by the broker for the inboxes whose
    depth changed since its last sample (it samples every `HIVE_DEPTH_SAMPLE_SECONDS`)."""

    kind: Literal["hive.inbox.depths.v1"] = "hive.inbox.depths.v1"
    depths: dict[str, Annotated[int, Field(ge=0)]] = Field(max_length=DEPTHS_PER_SAMPLE)


# ── harness plane (`hive.harness.<name>.<verb>`, served by that agent's harness) ───────────

TurnState = Literal["idle", "thinking", "compacting", "waiting", "paused", "needs-login", "backing-off"]


class HarnessState(WireModel):
    """What an agent's harness is doing. Published on `hive.agent.<name>.event.turn_state` at every change (kept in
    HIVE_EVENTS) and on `hive.agent.<name>.heartbeat` every `heartbeat_seconds`: a dashboard that misses three
    heartbeats knows the harness is gone. Also the answer to every harness-plane request."""

    kind: Literal["hive.harness.state.v1"] = "hive.harness.state.v1"
    agent: str
    state: TurnState = Field(
        description="`waiting`: for the operator's decision on a tool call; `backing-off`: the API refused (rate "
        "limit, error) and the turn is retried later; `needs-login`: the CLI has no login or key (see `note`)."
    )
    since: datetime
    model: str = Field(description="The model the next turn runs with.")
    model_overridden: bool = Field(False, description="The operator's `/model` override is in force.")
    paused: bool = False
    note: str = Field("", description="A sentence for the operator: what happened, or what to do.")
    turns: int = Field(0, description="Turns run since the harness started.")
    last_turn_at: datetime | None = None
    heartbeat_seconds: float


class ModelRequest(WireRequest):
    """`hive.harness.<name>.model`: the operator's `/model`; from the next turn on, kept across restarts."""

    kind: Literal["hive.harness.model.v1"] = "hive.harness.model.v1"
    model: str | None = Field(None, pattern=MODEL_PATTERN, description="`null`: back to agent.nix's model.")


class PauseRequest(WireRequest):
    """`hive.harness.<name>.pause`: while paused, messages queue in the inbox and no turn runs."""

    kind: Literal["hive.harness.pause.v1"] = "hive.harness.pause.v1"
    paused: bool = True


class WaitingNotice(WireModel):
    """`hive.harness.<name>.waiting` (from the agent's own PreToolUse hook): a tool call waits for the operator."""

    kind: Literal["hive.harness.waiting.v1"] = "hive.harness.waiting.v1"
    approval_id: int | None = Field(description="The approval waited for; `null` once it is decided.")


class HarnessReply(WireModel):
    """The answer to `cancel`, `model`, `compact` and `pause`: what was done, and the state after it."""

    kind: Literal["hive.harness.reply.v1"] = "hive.harness.reply.v1"
    done: str = Field(description="A sentence saying what happened.")
    state: HarnessState


class PtyOpen(WireRequest):
    """`hive.harness.<name>.pty.open`: a shell in the agent's container. Output arrives on
    `hive.agent.<name>.pty.<session>.out` (raw bytes); input goes to `hive.harness.<name>.pty.<session>.in`, a
    `PtyResize` to `….resize`, anything to `….close`; `hive.agent.<name>.pty.<session>.closed` says it ended."""

    kind: Literal["hive.pty.open.v1"] = "hive.pty.open.v1"
    cols: int = Field(80, ge=10, le=1000)
    rows: int = Field(24, ge=4, le=500)
    opened_by: str = Field("operator", max_length=100, description="Who opened it, for the audit trail.")


class PtyResize(WireRequest):
    kind: Literal["hive.pty.resize.v1"] = "hive.pty.resize.v1"
    cols: int = Field(ge=10, le=1000)
    rows: int = Field(ge=4, le=500)


class PtyControl(WireRequest):
    """`hive.harness.<name>.pty.<session>.control` (a request): take control of a terminal (`control`), or give it
    back. A terminal opens watching: its input is ignored until it has control. Taking it waits for the running turn
    to end and holds the turn loop until it is given back or the terminal closes, so the operator and the model
    never type into the container at once. The answer is the same model, saying what holds now.

    While it has control, whoever took it says it is still there (anything to `….alive`) every
    `PTY_ALIVE_SECONDS`; after three missed, control is given back by itself (a dashboard that died would otherwise
    hold the agent's turns for ever)."""

    kind: Literal["hive.pty.control.v1"] = "hive.pty.control.v1"
    control: bool = True


PTY_ALIVE_SECONDS = 10.0


class PtySession(WireModel):
    """One terminal session: the answer to `pty.open`, and the data of the `pty_opened` and `pty_closed` events
    (`hive.agent.<name>.event.pty_opened`, `….pty_closed`), stored for the audit trail."""

    kind: Literal["hive.pty.session.v1"] = "hive.pty.session.v1"
    agent: str
    session: str
    opened_by: str
