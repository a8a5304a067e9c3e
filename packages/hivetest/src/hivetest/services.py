"""Each service's settings on a test hive, as `hivectl up` would give them (a spawner of stand-in agents, or of the
real harness), and a spawner stand-in for tests of the approver."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.js import api as js_api

from hive_approver.settings import ApproverSettings
from hive_broker.settings import BrokerSettings
from hive_spawner.settings import SpawnerSettings
from hivetest.claude import CLAUDE, SCRIPTED_ENV
from hivetest.hive import TestHive
from hivetest.messages_api import MessagesApi
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import Approval, FreezeReply, FreezeRequest, OutcomeRequest, SpawnerCommand

AGENT_SCRIPT = "id -u > /state/whoami; echo ready; exec sleep 600"
"""What a test spawner runs as an agent: it says who it is and that it is ready, then waits."""


def broker_settings(hive: TestHive, **overrides: Any) -> BrokerSettings:
    base = hive.settings(subjects.BROKER)
    return BrokerSettings(nats_url=base.nats_url, nats_creds=base.nats_creds, state_dir=base.state_dir, **overrides)


def approver_settings(hive: TestHive, database_url: str) -> ApproverSettings:
    base = hive.settings(subjects.APPROVER)
    return ApproverSettings(
        nats_url=base.nats_url, nats_creds=base.nats_creds, state_dir=base.state_dir, database_url=database_url
    )


def spawner_settings(hive: TestHive, state: Path) -> SpawnerSettings:
    """A spawner on this test's NATS, minting real credentials, running a stand-in agent that says "ready"."""
    return _spawner(hive, state, agent_command=["/bin/sh", "-c", AGENT_SCRIPT])


def real_harness_spawner(hive: TestHive, state: Path, api: MessagesApi, **agent_env: str) -> SpawnerSettings:
    """A spawner that runs the real harness in bubblewrap, its CLI pointed at the scripted Messages API."""
    env = {
        "HIVE_CLAUDE": json.dumps([str(CLAUDE)]),
        "HIVE_CLAUDE_ENV": json.dumps({**SCRIPTED_ENV, "ANTHROPIC_BASE_URL": api.url}),
        **agent_env,
    }
    return _spawner(hive, state, agent_env=env)


def _spawner(hive: TestHive, state: Path, **fields: Any) -> SpawnerSettings:
    base = hive.settings(subjects.SPAWNER)
    return SpawnerSettings(
        nats_url=base.nats_url, nats_creds=base.nats_creds, state_dir=state, nats_auth_dir=hive.server.root, **fields
    )


class TestSpawner:
    """Answers `freeze` like the real spawner (known refs only) and applies queued commands by reporting an outcome."""

    __test__ = False

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.refs: dict[str, str] = {}
        self.failing: set[str] = set()
        self.commands: list[SpawnerCommand] = []
        self.applied = asyncio.Event()

    def knows(self, ref: str) -> str:
        sha = hashlib.sha1(ref.encode()).hexdigest()  # noqa: S324 - a made-up commit id
        self.refs[ref] = sha
        return sha

    async def freeze(self, subject: str, req: FreezeRequest) -> FreezeReply:
        if req.commit_ref not in self.refs:
            raise HiveError(ErrorCode.NOT_FOUND, f"{req.commit_ref} is not a commit of {req.agent}'s proposed repo.")
        return FreezeReply(sha=self.refs[req.commit_ref], tag=f"proposal/{req.approval_id}", diff="+ model = x;\n")

    async def work(self) -> None:
        js = self.nc.jetstream()
        sub = await js.pull_subscribe(
            subjects.spawner_cmd(),
            durable="spawner-local",
            stream=subjects.SPAWNER_CMD_STREAM,
            config=js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.EXPLICIT),
        )
        while True:
            try:
                msgs = await sub.fetch(1, timeout=30)
            except TimeoutError:
                continue
            for msg in msgs:
                command = SpawnerCommand.model_validate_json(msg.data)
                self.commands.append(command)
                ok = command.agent not in self.failing
                outcome = OutcomeRequest(approval_id=command.approval_id, ok=ok, reason="" if ok else "eval failed")
                try:
                    await bus.call(self.nc, subjects.operator(subjects.APPROVER, "outcome"), outcome, Approval)
                except HiveError:
                    continue  # like the real spawner: not acked, so it comes again
                await msg.ack()
                self.applied.set()
