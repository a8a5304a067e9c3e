"""The turn loop: wait for messages (pushed, a long poll), wake the model with a short prompt, run the turn with the
real `claude` CLI, acknowledge the messages once the turn has started, and publish what happened.

Around a turn: the state the dashboard shows (idle, thinking, compacting, waiting, paused, needs-login,
backing-off) with a heartbeat; the operator's harness-plane verbs (cancel, model, compact, pause); what to do when a
turn fails (a too-long prompt is compacted once and retried, an API error or rate limit is retried with back-off, a
missing login waits for the operator); and notes compaction after a turn.

The turn loop and the harness-plane verbs stay in one module: they share the turn's state, its lock and its
cancel, which split apart would be private state reached across modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from typing import Any, TypeVar

import nats.errors
from nats.aio.client import Client
from pydantic import BaseModel

from hive_harness.hook import BashGate
from hive_harness.notes import compact_notes
from hive_harness.settings import HarnessSettings
from hive_harness.state import StateFiles, read_policy
from hive_harness.tools import ToolServer
from hive_harness.turn import CLI_RUN_DIRS, TurnResult, cli_env, cli_flags, run_turn
from hyperhive import bus, events, runtime
from hyperhive.backoff import Backoff
from hyperhive.inbox import Handled, Inbox
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    AgentPolicy,
    Empty,
    HarnessReply,
    HarnessState,
    Message,
    ModelRequest,
    NotesCompacted,
    PauseRequest,
    SlotReply,
    SlotRequest,
    TurnState,
    TurnStats,
    WaitingNotice,
)
from hyperhive.wire.names import party

log = logging.getLogger("hive_harness")
T = TypeVar("T")

NEEDS_LOGIN = (
    "The claude CLI has no valid Anthropic credential. On the hive's host run `hivectl login` (an API key, or the "
    "token `claude setup-token` prints), then send the agent a message: the unfinished turn's messages go with it."
)


def wake_prompt(messages: list[Message], unread: int, carried: list[Message] | None = None) -> str:
    """The short prompt that wakes the model: who wrote what, and what it may have seen before."""
    carried = carried or []
    total = len(carried) + len(messages)
    lines = [f"You have {total} new message{'s' if total != 1 else ''}."]
    if carried:
        lines.append(f"Your last turn did not finish; its {len(carried)} message(s) come first again.")
    for m in carried + messages:
        again = " (delivered again after a restart: you may have handled it already)" if m.redelivered else ""
        sender = m.sender.replace(subjects.TOOL_SENDER, "tool ", 1)  # `tool:ci` writes as "From tool ci"
        lines.append(f"From {sender}{' to everyone' if m.broadcast else ''}{again}:\n{m.body}")
    if unread:
        lines.append(f"{unread} more unread: use the recv tool.")
    return "\n\n".join(lines)


class Harness:
    def __init__(self, nc: Client, settings: HarnessSettings) -> None:
        self.nc = nc
        self.settings = settings
        self.agent = settings.agent
        self.files = StateFiles(settings.state_dir)
        handled = Handled(settings.state_dir / "handled.json")  # one record for the turns and the recv tool
        self.inbox = Inbox(nc, self.agent, held_file=settings.state_dir / "harness-held.json", handled=handled)
        self.gate = BashGate(self.agent, nc, self._publish_event, self._waiting)
        self.tools = ToolServer(nc, self.agent, settings.state_dir, self.gate.app, handled)
        self._cancel = asyncio.Event()
        self._unpaused = asyncio.Event()
        if self.files.read("hyperhive-paused") is None:
            self._unpaused.set()
        self._busy = asyncio.Lock()  # one CLI at a time: a turn, or a compaction the operator asked for
        self._state: TurnState = "paused" if self.paused else "idle"
        self._note = ""
        self._since = datetime.now(UTC)
        self.turns = 0
        self._last_turn: datetime | None = None
        self._policy_problem = ""
        self._holder: str | None = None  # the terminal session in control, holding the turn loop

    async def open(self, stack: AsyncExitStack) -> None:
        """Open the inbox and start the MCP tools every turn's CLI uses, for the life of `stack`."""
        await self.inbox.open()
        await self.tools.start(stack)
        for inbox in (self.inbox, self.tools.context.inbox):  # held while paused, or handed out by recv: kept alive
            runtime.background(stack, inbox.keep_alive(), f"{self.agent}-keep-alive")

    # ── state ────────────────────────────────────────────────────────────────

    @property
    def paused(self) -> bool:
        return not self._unpaused.is_set()

    def policy(self) -> AgentPolicy:
        """The applied policy (`read_policy`). A missing, unreadable or invalid file leaves the harness running on
        defaults, with Bash off (every command denied) and the reason in its state note."""
        policy, problem = read_policy(self.settings.policy_file, self.agent)
        if problem != self._policy_problem:
            log.warning("agent=%s policy_file=%s problem=%r", self.agent, self.settings.policy_file, problem)
            self._policy_problem = problem
        return policy

    def model(self, policy: AgentPolicy | None = None) -> str:
        """The operator's /model override (kept in /state/hyperhive-model) over agent.nix's model."""
        return self.files.read("hyperhive-model") or (policy or self.policy()).model

    def state(self) -> HarnessState:
        model = self.model()
        note = self._note or (
            f"Bash is off: the policy could not be read ({self._policy_problem})." if self._policy_problem else ""
        )
        return HarnessState(
            agent=self.agent,
            state=self._state,
            since=self._since,
            model=model,
            model_overridden=self.files.read("hyperhive-model") is not None,
            paused=self.paused,
            note=note,
            turns=self.turns,
            last_turn_at=self._last_turn,
            heartbeat_seconds=self.settings.heartbeat_seconds,
        )

    async def _set(self, state: TurnState, note: str = "") -> None:
        """Enter `state` and tell the hive (HIVE_EVENTS keeps it, so a dashboard that reconnects catches up)."""
        if state == "idle" and self.paused:
            state = "paused"
        if (state, note) == (self._state, self._note):
            return
        self._state, self._note, self._since = state, note, datetime.now(UTC)
        log.info("agent=%s state=%s note=%r", self.agent, state, note)
        await self._publish_event("turn_state", self.state())

    async def _publish_event(self, kind: str, data: BaseModel | dict[str, Any]) -> None:
        await events.publish(self.nc, kind, data, about=self.agent, by_agent=True)

    async def _record(self, figures: TurnStats | NotesCompacted) -> None:
        """Store a turn's (or a notes compaction's) figures in HIVE_STATS, acknowledged: the dashboard's totals of
        turns, tokens and cost are made of them. One the stream cannot take is logged, and the turn goes on."""
        try:
            await events.store(
                self.nc, subjects.agent(self.agent, subjects.STATS), bus.encode(figures), "turn's figures"
            )
        except HiveError as exc:
            log.error("agent=%s outcome=figures_unrecorded kind=%s error=%s", self.agent, figures.kind, exc)

    async def heartbeat(self) -> None:
        """Say we are alive every `heartbeat_seconds` (core NATS: a missed beat is news, an old one is not)."""
        while True:
            await self.nc.publish(subjects.agent(self.agent, subjects.HEARTBEAT), bus.encode(self.state()))
            await asyncio.sleep(self.settings.heartbeat_seconds)

    # ── the harness plane: what the operator (and the agent's own hook) may ask ──────────────────────────────

    async def serve(self, stack: AsyncExitStack) -> None:
        """Answer `hive.harness.<agent>.<verb>` for as long as `stack` lives, and beat."""

        def verb(
            name: str, request: type[Any], handler: Callable[[Any], Awaitable[Any]], concurrent: bool = False
        ) -> bus.Endpoint[Any]:
            async def handle(subject: str, body: Any) -> Any:
                return await handler(body)

            return bus.Endpoint(name, subjects.harness(self.agent, name), request, handle, concurrent)

        endpoints = [
            verb("state", Empty, self._on_state),
            verb("cancel", Empty, self._on_cancel),
            verb("model", ModelRequest, self._on_model),
            verb("pause", PauseRequest, self._on_pause),
            verb("compact", Empty, self._on_compact, concurrent=True),
            verb("waiting", WaitingNotice, self._on_waiting),
        ]
        await stack.enter_async_context(bus.respond(self.nc, endpoints))
        runtime.background(stack, self.heartbeat(), f"{self.agent}-heartbeat")
        await self._publish_event("turn_state", self.state())

    def _reply(self, done: str) -> HarnessReply:
        return HarnessReply(done=done, state=self.state())

    async def _on_state(self, _: Empty) -> HarnessState:
        return self.state()

    async def _on_cancel(self, _: Empty) -> HarnessReply:
        if not self._busy.locked():
            return self._reply("No turn was running; nothing to cancel.")
        self._cancel.set()
        return self._reply("Cancelling the running turn; its messages go with the next one.")

    async def _on_model(self, request: ModelRequest) -> HarnessReply:
        if request.model is None:
            self.files.remove("hyperhive-model")
        else:
            self.files.write("hyperhive-model", request.model + "\n")
        await self._publish_event("model_changed", {"model": self.model(), "override": request.model})
        return self._reply(f"From the next turn on, {self.agent} runs with {self.model()}.")

    async def _on_pause(self, request: PauseRequest) -> HarnessReply:
        if request.paused:
            self.files.write("hyperhive-paused", "paused by the operator\n")
            self._unpaused.clear()
        else:
            self.files.remove("hyperhive-paused")
            self._unpaused.set()
        if self._state in ("idle", "paused"):
            await self._set("idle")
        return self._reply("Paused: messages queue, no turn runs." if request.paused else "Resumed.")

    async def _on_compact(self, _: Empty) -> HarnessReply:
        if self._busy.locked():
            raise HiveError(ErrorCode.CONFLICT, f"{self.agent} is in a turn; cancel it or compact when it is idle.")
        async with self._busy:
            done = await self.compact_session()
            await self._set("idle")
        return self._reply(done)

    async def _on_waiting(self, notice: WaitingNotice) -> Empty:
        await self._waiting(notice.approval_id)
        return Empty()

    async def _waiting(self, approval_id: int | None) -> None:
        """A tool call of the running turn waits for the operator (None: it no longer does)."""
        if not self._busy.locked():
            return  # a stale notice: no turn is running
        if approval_id is None:
            await self._set("thinking")
        else:
            await self._set("waiting", f"A tool call waits for the operator's decision on request #{approval_id}.")

    # ── a terminal in control (`terminal.TurnHold`) ─────────────────────────────

    async def hold(self, holder: str) -> None:
        """Hold the turn loop for a terminal the operator takes control of: once the running turn (or compaction)
        has ended, none starts until `release`. Messages wait in the inbox meanwhile, as when paused."""
        await self._busy.acquire()
        if self._holder is not None:  # one holder at a time: another terminal gave it to this one
            self._busy.release()
            raise HiveError(ErrorCode.CONFLICT, "Another terminal has control.")
        self._holder = holder
        await self._set("paused", "The operator has control of a terminal; turns wait until they give it back.")

    async def release(self, holder: str) -> None:
        if self._holder != holder:
            return
        self._holder = None
        self._busy.release()
        await self._set("idle")

    # ── turns ────────────────────────────────────────────────────────────────

    async def run_forever(self) -> None:
        """Turns for as long as the harness runs. The hive going away for a while (NATS reconnecting, the broker
        restarting) is waited out with back-off, in the state, rather than ending the harness."""
        backoff, failed, recovering = self._backoff(), False, True
        while True:
            try:
                if recovering:
                    await self.recover()
                    recovering = False
                if failed:
                    await self.inbox.open()  # the broker makes sure the inbox's consumer exists again
                    failed = False
                    await self._set("idle")
                await self.run_once(self.settings.recv_wait_seconds)
                backoff.succeeded()
            except (HiveError, nats.errors.Error, TimeoutError) as exc:
                log.warning("agent=%s outcome=hive_unreachable error=%r", self.agent, exc)
                delay, failed = backoff.failed(), True
                await self._set("backing-off", f"The hive is not reachable ({exc}); trying again in {delay:.0f} s.")
                await asyncio.sleep(delay)

    def _backoff(self) -> Backoff:
        return Backoff(self.settings.backoff_seconds, self.settings.backoff_max_seconds)

    async def recover(self) -> TurnResult | None:
        """A harness killed during a turn left that turn's messages in `turn.json` (they were acknowledged when it
        started, so JetStream will not bring them again): offer them first, in a turn of their own, saying that the
        last turn did not finish; with whatever is waiting now."""
        interrupted = self.files.messages("turn.json")
        if not interrupted:
            return None
        log.warning("agent=%s outcome=turn_interrupted messages=%d; offering them again", self.agent, len(interrupted))
        self._carry(interrupted)
        self.files.remove("turn.json")
        messages, unread = await self.inbox.take(max_messages=8, wait=0)
        async with self._busy:
            return await self._turn(messages, unread)

    async def run_once(self, wait: float) -> TurnResult | None:
        """Take what is waiting (up to `wait` seconds for the first message) and run one turn for it. While paused,
        taken messages stay unacknowledged (a restart gets them back) until the operator resumes."""
        messages, unread = await self.inbox.take(max_messages=8, wait=wait)
        if not messages:
            return None
        if self.paused:
            await self._set("paused", f"Paused with {len(messages)} message(s) waiting.")
            await self._unpaused.wait()
        async with self._busy:
            return await self._turn(messages, unread)

    def _carry(self, messages: list[Message]) -> None:
        """Keep the messages of a turn that did not finish, to go with the next one."""
        self.files.keep_messages("carried.json", messages)

    async def _turn(self, messages: list[Message], unread: int) -> TurnResult:
        taken = {m.id for m in messages}  # a message both carried and delivered again goes once, as delivered
        carried = [m for m in self.files.messages("carried.json") if m.id not in taken]
        everything = carried + messages
        prompt = wake_prompt(messages, unread, carried)
        tokens = [m.token for m in messages]
        self._cancel.clear()
        # Recorded before they are acknowledged: a harness killed in this turn offers them again (`recover`).
        self.files.keep_messages("turn.json", everything)
        try:
            return await self._attempts(prompt, tokens, messages, everything, len(messages) + unread)
        finally:
            self.files.remove("turn.json")

    async def _attempts(
        self, prompt: str, tokens: list[str], messages: list[Message], everything: list[Message], depth: int
    ) -> TurnResult:
        """Run the turn until it ends one way or another: retried after a too-long prompt or an API refusal."""
        backoff, compacted, fresh = self._backoff(), False, False
        while True:
            await self._set("thinking")
            result = await self._run(prompt, tokens, messages, depth)  # empties `tokens` once it has acked them
            exit_class = result.stats.exit_class
            if exit_class == "ok":
                self._carry([])
                await self._set("idle")
                await self._compact_notes()
                return result
            if exit_class == "cancelled":
                return await self._cancelled(everything, result)
            if exit_class == "needs_login":
                self._carry(everything)
                await self._set("needs-login", NEEDS_LOGIN)
                return result
            if exit_class == "prompt_too_long" and not compacted:
                compacted = True
                await self.compact_session()
                continue
            if exit_class == "prompt_too_long" and not fresh:
                fresh = True  # still too long after compacting: the model's notes carry it into a fresh session
                self.files.remove("session-id")
                continue
            if exit_class == "prompt_too_long":
                self._carry([])
                await self._set("idle", "The last prompt was too long even in a fresh session; it was dropped.")
                return result
            why = {"rate_limited": "The API is rate limiting", "crashed": "The claude CLI failed"}.get(
                exit_class, "The API answered with an error"
            )
            delay = backoff.failed()
            await self._set("backing-off", f"{why} ({result.result_text[:200]}); retrying in {delay:.0f} s.")
            try:
                await asyncio.wait_for(self._cancel.wait(), delay)
            except TimeoutError:
                continue
            return await self._cancelled(everything, result)

    async def _cancelled(self, messages: list[Message], result: TurnResult) -> TurnResult:
        self._carry(messages)
        await self._set("idle", "The operator cancelled the last turn; its messages go with the next one.")
        return result

    async def _run(self, prompt: str, tokens: list[str], messages: list[Message], depth: int) -> TurnResult:
        """One CLI run of a turn: events out as they come, the messages acked at the first one, stats at the end
        (with what only the harness knows: the inbox's depth, the messages read and sent per party, the notes'
        size)."""
        started = False

        async def on_event(event: dict[str, Any]) -> None:
            nonlocal started
            if not started and tokens:  # the turn has started: the messages have reached the model
                started = True
                await self.inbox.ack(tokens)
                tokens.clear()  # a retry of this turn (a CLI that failed, a compaction) acks nothing again
            await self._publish_event("turn", event)
            if event.get("type") == "system" and event.get("subtype") == "init":  # a live view starts at init
                await self._publish_event("turn", {"type": "user", "message": {"role": "user", "content": prompt}})

        self.gate.denied = 0
        self.tools.traffic()  # what came before this turn is not its own
        result = await self._cli(prompt, on_event, messages=len(messages), cancel=self._cancel)
        if tokens and result.stats.exit_class == "cancelled":  # before the CLI said a word: they go with the next
            await self.inbox.ack(tokens)  # turn (carried), so they are acknowledged as a started turn's are
            tokens.clear()
        sent, received = self.tools.traffic()
        received.update(party(m.sender) for m in messages)
        figures = {"inbox_depth": depth, "sent": dict(sent), "received": dict(received), "notes_bytes": self._notes()}
        result.stats = result.stats.model_copy(update={"bash_denied": self.gate.denied, **figures})
        await self.tools.turn_ended()
        if result.session_id:
            self.files.write("session-id", result.session_id)
        self.turns += 1
        self._last_turn = result.stats.started_at
        await self._record(result.stats)
        log.info("agent=%s turn exit=%s tools=%s", self.agent, result.stats.exit_class, result.stats.tool_calls)
        return result

    @contextlib.asynccontextmanager
    async def _slot(self) -> AsyncIterator[None]:
        """One of the host's turn slots (the spawner's `hive.agent.<name>.slot`) for as long as the CLI runs: so a
        hundred agents woken at once take turns instead of holding ~200 MiB each together. Waited for in `thinking`,
        with a note. With no spawner to answer (a harness run on its own) the CLI runs without one."""
        where, held, withdrawn, wait = subjects.agent(self.agent, "slot"), False, False, 0.0
        try:
            while not held and not self._cancel.is_set():
                try:
                    reply = await self._cancellable(
                        bus.call(self.nc, where, SlotRequest(wait_seconds=wait), SlotReply, timeout=wait + 15)
                    )
                except HiveError as exc:
                    if exc.code != ErrorCode.UNAVAILABLE:
                        raise
                    log.info("agent=%s outcome=no_turn_slots reason=%r", self.agent, exc.message)
                    break
                if reply is None:  # the operator cancelled the turn while it waited
                    withdrawn = True
                    break
                held = reply.granted
                if not held and not wait:  # said at once, then waited for in long polls
                    await self._set("thinking", f"Waiting for one of the host's {reply.limit} turn slots.")
                wait = 60.0
            yield
        finally:
            if held or withdrawn:  # a give-back frees the slot held, or withdraws the ask still waiting
                with contextlib.suppress(HiveError):  # not given back: the spawner takes it back at a stop or crash
                    await bus.call(self.nc, where, SlotRequest(release=True), SlotReply, timeout=10)

    async def _cancellable(self, work: Awaitable[T]) -> T | None:
        """`work`'s result, or None once the operator cancels the turn first (`work` is then cancelled)."""
        doing, cancel = asyncio.ensure_future(work), asyncio.ensure_future(self._cancel.wait())
        try:
            await asyncio.wait({doing, cancel}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not doing.done():
                await runtime.cancelled(doing)
            await runtime.cancelled(cancel)
        return None if doing.cancelled() else doing.result()

    async def _cli(self, prompt: str, on_event: Callable[[dict[str, Any]], Awaitable[None]], **turn: Any) -> TurnResult:
        """The CLI on the agent's session, with its current model, tools, environment and working dir; not started
        for a turn cancelled while it waited for its slot."""
        async with self._slot():
            if self._cancel.is_set():
                stats = TurnStats(
                    agent=self.agent, model=self.model(self.policy()), started_at=datetime.now(UTC),
                    duration_ms=0, exit_class="cancelled", messages=turn.get("messages", 0),
                )  # fmt: skip
                return TurnResult(stats, "Cancelled before the claude CLI started.")
            return await self._cli_now(prompt, on_event, **turn)

    async def _cli_now(
        self, prompt: str, on_event: Callable[[dict[str, Any]], Awaitable[None]], **turn: Any
    ) -> TurnResult:
        policy = self.policy()
        self.gate.use(policy.allowed_bash, self._policy_problem)
        for name in CLI_RUN_DIRS:
            shutil.rmtree(self.settings.state_dir / ".claude" / name, ignore_errors=True)
        return await run_turn(
            agent=self.agent,
            claude=self.settings.claude,
            prompt=prompt,
            model=self.model(policy),
            flags=cli_flags(self.settings.state_dir, policy, self.tools),
            session=self.files.read("session-id"),
            cwd=self.settings.state_dir,
            env=cli_env(self.settings),
            on_event=on_event,
            **turn,
        )

    async def compact_session(self) -> str:
        """Compact the agent's session with the CLI's own `/compact` (the caller holds the busy lock)."""
        session = self.files.read("session-id")
        if session is None:
            return "There is no session yet; nothing to compact."
        await self._set("compacting", "Compacting the session.")
        result = await self._cli("/compact", lambda event: self._publish_event("turn", event))
        if result.stats.exit_class != "ok":
            return f"Compacting failed ({result.result_text[:200]})."
        return "The session was compacted."

    def _notes(self) -> int:
        try:
            return (self.settings.state_dir / "notes.md").stat().st_size
        except OSError:
            return 0

    async def _compact_notes(self) -> None:
        policy = self.policy()
        notes = self.settings.state_dir / "notes.md"
        if not notes.exists() or notes.stat().st_size <= policy.notes_threshold:
            return
        await self._set("compacting", "Compacting the agent's notes.")
        t = time.monotonic()
        record = await compact_notes(
            notes,
            agent=self.agent,
            claude=self.settings.claude,
            model=self.model(policy),
            env=cli_env(self.settings),
            threshold=policy.notes_threshold,
        )
        log.info(
            "agent=%s notes before=%d after=%d ok=%s %.0f ms",
            self.agent,
            record.before_bytes,
            record.after_bytes,
            record.ok,
            (time.monotonic() - t) * 1000,
        )
        await self._record(record)
        await self._set("idle", "" if record.ok else f"Notes compaction failed: {record.reason}")
