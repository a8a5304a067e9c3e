"""The spawner's approved work: its host's queue of spawner commands (each acknowledged only once its outcome is
reported; the one being applied when a spawner died is taken up again at once), and each command's steps — draft,
freeze, evaluate, apply, admit, start — every one of which, run again after a kill, ends where one run would have."""

from __future__ import annotations

import asyncio
import contextlib
import logging

import nats.errors
from nats.aio.msg import Msg
from nats.js import api as js_api

from hive_spawner.lifecycle import BOOTSTRAP, Lifecycle
from hive_spawner.repos import proposal_tag
from hyperhive import bus
from hyperhive.files import read_untrusted, write_atomic
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AgentPolicy, Approval, OutcomeRequest, SpawnerCommand
from hyperhive.wire.names import MANAGER, check_agent_name, check_agent_ref

log = logging.getLogger("hive_spawner")

IN_FLIGHT = ".in-flight-command"  # the delivery token of the command being applied


class Commands(Lifecycle):
    async def apply(self, command: SpawnerCommand) -> None:
        """Carry out one approved command. Run again after a kill at any step, it ends where one run would have."""
        async with self._busy[command.agent]:
            await self._transient(command.agent, "rebuilding" if command.action == "apply_commit" else "spawning")
            if command.action == "apply_commit":
                if command.tag is None or command.sha is None:
                    raise HiveError(ErrorCode.INVALID_REQUEST, f"Approval #{command.approval_id} has no frozen commit.")
                policy = await asyncio.to_thread(self._evaluate_and_apply, command.agent, command.tag, command.sha)
                await self._publish_policy(command.agent, policy)
            elif command.action == "spawn_draft":
                await asyncio.to_thread(self._draft, command.agent)
            else:  # spawn (from the template as it is) or spawn_commit (from a reviewed, frozen commit)
                await self._spawn(command)
            await self._state_changed(command.agent)

    async def _spawn(self, command: SpawnerCommand) -> None:
        """spawn (from the template as it is) or spawn_commit (from a reviewed, frozen commit)."""
        if command.action == "spawn":
            tag, sha = await asyncio.to_thread(self._draft_frozen, command.agent, command.approval_id)
        elif command.tag is None or command.sha is None:
            raise HiveError(ErrorCode.INVALID_REQUEST, f"Approval #{command.approval_id} has no frozen commit.")
        else:
            tag, sha = command.tag, command.sha
        policy = await asyncio.to_thread(self._evaluate_and_apply, command.agent, tag, sha)
        await self._admit(command.agent)
        await self._publish_policy(command.agent, policy)
        await self.start_agent(command.agent, restarted=False)

    def _draft_frozen(self, agent: str, approval_id: int) -> tuple[str, str]:
        """spawn: the new agent's repos, and its template commit frozen for this approval — or what an earlier run
        of the command froze (the manager may have committed since: the approval was for the template)."""
        self._draft(agent, bootstrap=approval_id == BOOTSTRAP)
        tag = proposal_tag(approval_id)
        sha = self.repos.tagged(agent, tag) or self.repos.freeze(agent, self.repos.head(agent), approval_id).sha
        return tag, sha

    def _evaluate_and_apply(self, agent: str, tag: str, sha: str) -> AgentPolicy:
        """Evaluate the frozen commit first; only a commit that evaluates and validates is applied."""
        with self.repos.checkout(agent, tag, sha) as files:
            policy = self._evaluate(files, agent)
        self.repos.apply(agent, tag, sha)
        self._hand_over(agent, policy)
        return policy

    def _draft(self, agent: str, *, bootstrap: bool = False) -> None:
        """A new agent's repos and state dir, made or finished. Only the hive's own bootstrap may create the
        manager."""
        name = check_agent_ref(agent) if bootstrap and agent == MANAGER else check_agent_name(agent)
        if name in self.tools.names():
            raise HiveError(ErrorCode.CONFLICT, f"{name!r} is a tool's name; an agent needs a name of its own.")
        if not self.repos.exists(name):
            self._mark(name, None)  # what a purge killed at its very end left of an earlier agent of this name
        self.repos.create(name, grant=self.backend.grant_manager)
        (self.state_root / name).mkdir(parents=True, exist_ok=True, mode=0o700)

    async def work(self) -> None:
        """Follow this host's work queue until cancelled."""
        durable = f"spawner-{self.host}"
        sub = await self._js.pull_subscribe(
            subjects.spawner_cmd(self.host),
            durable=durable,
            stream=subjects.SPAWNER_CMD_STREAM,
            config=js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.EXPLICIT, ack_wait=300),
        )
        await self._release_in_flight()
        await bus.each(self._nc, sub, SpawnerCommand, self._carry_out, batch=1)

    async def _release_in_flight(self) -> None:
        """A spawner killed while applying a command leaves its delivery token: hand it back, so the command is taken
        up again now rather than after ack_wait (300 s)."""
        text = read_untrusted(self.state_root / IN_FLIGHT)
        if text:
            with contextlib.suppress(nats.errors.Error):
                await self._nc.request(text, b"-NAK", timeout=2)
            log.warning("outcome=in_flight_command_resumed token=%s", text)
        (self.state_root / IN_FLIGHT).unlink(missing_ok=True)

    async def _carry_out(self, msg: Msg, command: SpawnerCommand) -> None:
        write_atomic(self.state_root / IN_FLIGHT, msg.reply)
        try:
            await self._apply_and_report(msg, command)
        finally:
            (self.state_root / IN_FLIGHT).unlink(missing_ok=True)

    async def _apply_and_report(self, msg: Msg, command: SpawnerCommand) -> None:
        try:
            await self.apply(command)
            outcome = OutcomeRequest(approval_id=command.approval_id, ok=True)
        except HiveError as exc:
            if exc.code == ErrorCode.UNAVAILABLE:
                raise  # NATS or the store is away, not the command at fault: it comes again (bus.each backs off)
            outcome = OutcomeRequest(approval_id=command.approval_id, ok=False, reason=exc.message)
        log.info("approval=%d action=%s agent=%s ok=%s", command.approval_id, command.action, command.agent, outcome.ok)
        try:
            await bus.call(self._nc, subjects.operator(subjects.APPROVER, "outcome"), outcome, Approval)
        except HiveError as exc:
            if exc.code == ErrorCode.NOT_FOUND:  # no such approval: nothing will ever take this outcome
                await bus.set_aside(self._nc, msg, f"approval #{command.approval_id} does not exist: {exc.message}")
                return
            if exc.code != ErrorCode.CONFLICT:  # CONFLICT: reported before a crash; the approver has it
                log.warning("approval=%d outcome=unreported error=%s", command.approval_id, exc)
                return  # not acked: it comes again
        await msg.ack_sync()  # confirmed: a spawner stopped right after this one does not apply it again
