"""The spawner's wiring: freezing commits for the approver, and applying approved commands from its work queue.

A command is acknowledged only after its outcome is reported, so a spawner that dies mid-way gets it again; every
step is idempotent (the same frozen commit, the same policy), and an outcome the approver already has is not an error.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api

from hive_spawner.evaluate import evaluate
from hive_spawner.repos import ConfigRepos
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AgentPolicy, Approval, FreezeReply, FreezeRequest, OutcomeRequest, SpawnerCommand
from hyperhive.wire.names import check_agent_name

log = logging.getLogger("hive_spawner")


class Spawner:
    def __init__(self, nc: Client, js: JetStreamContext, repos: ConfigRepos, state_root: Path, host: str) -> None:
        self._nc = nc
        self._js = js
        self.repos = repos
        self.state_root = state_root
        self.host = host

    async def freeze(self, subject: str, req: FreezeRequest) -> FreezeReply:
        # git runs in a thread: the event loop keeps serving while it works.
        frozen = await asyncio.to_thread(self.repos.freeze, req.agent, req.commit_ref, req.approval_id)
        log.info("agent=%s approval=%d sha=%s outcome=frozen", req.agent, req.approval_id, frozen.sha[:12])
        return FreezeReply(sha=frozen.sha, tag=frozen.tag, diff=frozen.diff)

    async def apply(self, command: SpawnerCommand) -> None:
        """Carry out one approved command."""
        if command.action == "apply_commit":
            if command.tag is None or command.sha is None:
                raise HiveError(ErrorCode.INVALID_REQUEST, f"Approval #{command.approval_id} has no frozen commit.")
            policy = await asyncio.to_thread(self._evaluate_and_apply, command.agent, command.tag, command.sha)
            kv = await self._js.key_value(subjects.POLICY_BUCKET)
            await kv.put(command.agent, bus.encode(policy))
        elif command.action == "spawn_draft":
            await asyncio.to_thread(self._draft, command.agent)
        else:
            raise HiveError(ErrorCode.UNAVAILABLE, f"{command.action} needs a container backend, not built yet.")

    def _evaluate_and_apply(self, agent: str, tag: str, sha: str) -> AgentPolicy:
        """Evaluate the frozen commit first; only a commit that evaluates and validates is applied."""
        with self.repos.checkout(agent, tag, sha) as files:
            policy = evaluate(files, agent)
        self.repos.apply(agent, tag, sha)
        return policy

    def _draft(self, agent: str) -> None:
        if not self.repos.exists(agent):
            self.repos.create(agent)
        (self.state_root / check_agent_name(agent)).mkdir(parents=True, exist_ok=True, mode=0o700)

    async def work(self) -> None:
        """Follow this host's work queue until cancelled."""
        durable = f"spawner-{self.host}"
        sub = await self._js.pull_subscribe(
            subjects.spawner_cmd(self.host),
            durable=durable,
            stream=subjects.SPAWNER_CMD_STREAM,
            config=js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.EXPLICIT, ack_wait=300),
        )
        await bus.each(sub, self._carry_out, batch=1)

    async def _carry_out(self, msg: Msg) -> None:
        command = SpawnerCommand.model_validate_json(msg.data)
        try:
            await self.apply(command)
            outcome = OutcomeRequest(approval_id=command.approval_id, ok=True)
        except HiveError as exc:
            outcome = OutcomeRequest(approval_id=command.approval_id, ok=False, reason=exc.message)
        log.info("approval=%d action=%s agent=%s ok=%s", command.approval_id, command.action, command.agent, outcome.ok)
        try:
            await bus.call(self._nc, subjects.operator(subjects.APPROVER, "outcome"), outcome, Approval)
        except HiveError as exc:
            if exc.code != ErrorCode.CONFLICT:  # CONFLICT: reported before a crash; the approver has it
                log.warning("approval=%d outcome=unreported error=%s", command.approval_id, exc)
                return  # not acked: it comes again
        await msg.ack()

    def endpoints(self) -> list[bus.Endpoint[Any]]:
        return [bus.Endpoint("freeze", subjects.operator(subjects.SPAWNER, "freeze"), FreezeRequest, self.freeze)]
