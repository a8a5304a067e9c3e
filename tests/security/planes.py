"""What the plane tests share: a hive with alice and bob (real credentials, policies, a message waiting for each),
a spy that hears everything in the hive's account, the subjects a redirected answer would break, and the check
that nothing was."""

from __future__ import annotations

from contextlib import AsyncExitStack

from nats.aio.client import Client
from nats.aio.msg import Msg

from hive_broker.__main__ import start as start_broker
from hivetest.hive import TestHive
from hivetest.services import broker_settings
from hyperhive import bus
from hyperhive.inbox import Inbox
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentPolicy, SendReply, SendRequest

from .conftest import Attacks

# What a redirected answer would break: every one of these was reached through the reply subject before.
TARGETS = [
    "$JS.API.STREAM.PURGE.HIVE_EVENTS",
    "$JS.API.STREAM.DELETE.HIVE_INBOX",
    "$JS.API.STREAM.DELETE.HIVE_SPAWNER_CMD",
    "$JS.API.CONSUMER.DELETE.HIVE_INBOX.inbox-bob",
    "$JS.API.CONSUMER.MSG.NEXT.HIVE_INBOX.inbox-bob",
    "$KV.hive-policy.alice",
    "$KV.hive-policy.bob",
    "hive.inbox.bob",
    "hive.inbox.operator",
    "hive.harness.bob.pause",
    "hive.harness.bob.model",
    "hive.harness.bob.compact",
    "hive.harness.bob.pty.open",
    "hive.spawner.cmd.local",
    "hive.events.approval_resolved.bob",
    "hive.approver.outcome",
    "hive.agent.bob.send",
    "_INBOX.operator.stolen",
    "$SYS.REQ.SERVER.PING.RELOAD",
]


class Spy:
    """A host connection that hears everything in the hive's account."""

    def __init__(self) -> None:
        self.heard: list[str] = []

    async def hear(self, msg: Msg) -> None:
        self.heard.append(msg.subject)

    def reached(self, target: str) -> bool:
        return target in self.heard


async def scene(stack: AsyncExitStack, hive: TestHive) -> tuple[Client, Client, Spy]:
    """alice and bob with real credentials and policies, a real broker, a message waiting for each, a spy."""
    await start_broker(stack, broker_settings(hive))
    spawner = await hive.connect(subjects.SPAWNER)
    kv = await spawner.jetstream().key_value(subjects.POLICY_BUCKET)
    for name in ("alice", "bob"):
        hive.add_agent(name)
        await kv.put(name, bus.encode(AgentPolicy(agent=name, allowedRecipients=["bob", "alice"])))  # type: ignore[call-arg]
    alice = await hive.connect("alice")
    for name in ("alice", "bob"):
        await Inbox(await hive.connect(name), name).open()
    await bus.call(alice, subjects.agent("alice", "send"), SendRequest(to="bob", body="for bob"), SendReply)
    spy = Spy()
    watcher = await hive.connect(subjects.DASHBOARD)
    await watcher.subscribe(">", cb=spy.hear)
    await watcher.flush()
    return alice, watcher, spy


async def hive_is_intact(hive: TestHive) -> list[str]:
    """What a redirected answer would have broken, said as findings (empty when nothing was)."""
    js = (await hive.connect(subjects.SPAWNER)).jetstream()
    findings = []
    inbox = await js.stream_info(subjects.INBOX_STREAM)
    if inbox.state.messages < 1:
        findings.append("HIVE_INBOX lost messages")
    consumer = await js.consumer_info(subjects.INBOX_STREAM, "inbox-bob")
    if consumer.num_pending != 1 or consumer.delivered.stream_seq != 0:
        findings.append(f"bob's inbox changed: pending={consumer.num_pending} delivered={consumer.delivered}")
    commands = await js.stream_info(subjects.SPAWNER_CMD_STREAM)
    if commands.state.messages:
        findings.append(f"{commands.state.messages} spawner command(s) queued")
    kv = await js.key_value(subjects.POLICY_BUCKET)
    for name in ("alice", "bob"):
        AgentPolicy.model_validate_json((await kv.get(name)).value or b"")
    return findings


async def record_damage(hive: TestHive, attacks: Attacks) -> None:
    """Each thing found broken in the hive is an attack that succeeded."""
    for finding in await hive_is_intact(hive):
        attacks.record(finding, succeeded=True)
