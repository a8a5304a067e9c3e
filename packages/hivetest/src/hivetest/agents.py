"""Agents as their harnesses act, with real credentials on a test hive: `Agents` for the broker's side (send, take,
ack), `Caller` for the approver's (requests, questions), the operator's calls, and tools the operator admitted."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nats.aio.client import Client
from nats.js import api as js_api

from hivetest.hive import TestHive
from hyperhive import bus
from hyperhive.identity import mint_seed
from hyperhive.inbox import Inbox
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentPolicy, Approval, ApprovalRequest, Message, SendReply, SendRequest, ToolGrant
from hyperhive.wire.names import OPERATOR

CAUGHT_UP = 30  # seconds a service's book may take to apply a policy written here (it renews its watch when late)

if TYPE_CHECKING:
    from hive_approver.service import Approver
    from hive_broker.service import Broker


@dataclass
class Received:
    messages: list[Message]
    unread: int


@dataclass
class Agent:
    """An agent as its harness sees its messages: its own credential, its own subjects, its own inbox."""

    name: str
    nc: Client
    inbox: Inbox
    opened: bool = False

    async def send(self, to: str, body: str, **extra: object) -> SendReply:
        req = SendRequest(to=to, body=body, **extra)
        return await bus.call(self.nc, subjects.agent(self.name, "send"), req, SendReply)

    async def recv(self, wait: float = 0, max: int = 8, ack: list[str] | None = None) -> Received:
        if not self.opened:  # as a harness does once at start; needs the broker
            await self.inbox.open()
            self.opened = True
        if ack:
            await self.inbox.ack(ack)
        messages, unread = await self.inbox.take(max_messages=max, wait=wait)
        return Received(messages, unread)

    async def ack(self, tokens: list[str]) -> int:
        return await self.inbox.ack(tokens)

    async def restart(self) -> None:
        """As if the harness died and a new one started: a new connection, the same held-tokens file."""
        held = self.inbox.held_file
        self.inbox = Inbox(self.nc, self.name, held_file=held)
        await self.inbox.open()
        self.opened = True

    async def raw(self, verb: str, payload: bytes) -> dict[str, str]:
        """Send bytes as they are and return the error headers (empty on success)."""
        msg = await self.nc.request(subjects.agent(self.name, verb), payload, timeout=10)
        return dict(msg.headers or {})


class Agents:
    def __init__(self, hive: TestHive, broker: Broker | None) -> None:
        self.test_hive = hive
        self.broker = broker

    async def set_policy(self, name: str, recipients: list[str] | None) -> None:
        """Write (or delete, with None) an agent's applied policy, as the spawner does."""
        kv = await (await self.test_hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
        if recipients is None:
            await kv.delete(name)
            revision = (await kv.status()).stream_info.state.last_seq  # nats-py's delete returns no revision
        else:
            policy = AgentPolicy(agent=name, allowedRecipients=recipients)
            revision = await kv.put(name, bus.encode(policy))
        if self.broker is not None:
            await asyncio.wait_for(self.broker.policy.caught_up(revision or 0), CAUGHT_UP)

    async def agent(self, name: str, recipients: list[str] | None = None) -> Agent:
        self.test_hive.add_agent(name)
        if recipients is not None:
            await self.set_policy(name, recipients)
        nc = await self.test_hive.connect(name)
        return Agent(name, nc, Inbox(nc, name, held_file=self.test_hive.tmp_path / f"{name}-held.json"))

    async def events(self, kind: str, *, from_agents: bool = False) -> list[dict[str, object]]:
        """Every event of `kind` in HIVE_EVENTS so far (published by services, or by the agents themselves)."""
        js = (await self.test_hive.connect(subjects.SPAWNER)).jetstream()
        where = f"{subjects.AGENT_PREFIX}.*.event.{kind}" if from_agents else f"{subjects.EVENTS_PREFIX}.{kind}.>"
        info = await js.stream_info(subjects.EVENTS_STREAM, subjects_filter=where)
        count = sum((info.state.subjects or {}).values())
        out: list[dict[str, object]] = []
        if count:
            sub = await js.subscribe(
                where,
                ordered_consumer=True,
                config=js_api.ConsumerConfig(deliver_policy=js_api.DeliverPolicy.ALL),
            )
            for _ in range(count):
                out.append(json.loads((await sub.next_msg(timeout=5)).data))
            await sub.unsubscribe()
        return out


class Caller:
    """An agent as its harness calls the approver."""

    def __init__(self, name: str, nc: Client) -> None:
        self.name = name
        self.nc = nc

    async def request(self, kind: str, **fields: Any) -> Approval:
        req = ApprovalRequest(**fields)
        return await bus.call(self.nc, subjects.agent(self.name, f"request.{kind}"), req, Approval, timeout=10)

    async def call(self, verb: str, payload: Any, reply: Any, timeout: float = 10) -> Any:
        return await bus.call(self.nc, subjects.agent(self.name, verb), payload, reply, timeout=timeout)


async def make_agent(hive: TestHive, approver: Approver | None, name: str) -> Caller:
    """Authorize `name` and give it an applied policy (so it exists), as the spawner would."""
    hive.add_agent(name)
    kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
    revision = await kv.put(name, bus.encode(AgentPolicy(agent=name)))
    if approver is not None:
        await asyncio.wait_for(approver.agents.caught_up(revision), CAUGHT_UP)
    return Caller(name, await hive.connect(name))


async def operator_call(nc: Client, verb: str, payload: Any, reply: Any) -> Any:
    return await bus.call(nc, subjects.operator(subjects.APPROVER, verb), payload, reply, timeout=10)


class Tool:
    """A tool the operator admitted, connected with its own key."""

    def __init__(self, name: str, nc: Client, seed: Path) -> None:
        self.name = name
        self.nc = nc
        self.seed = seed

    async def send(self, to: str, body: str) -> SendReply:
        return await bus.call(self.nc, subjects.tool(self.name, "send"), SendRequest(to=to, body=body), SendReply)


async def admit_tool(
    hive: TestHive, name: str, send: list[str], *, broadcast: bool = False, ask: bool = False, **options: Any
) -> Tool:
    """What `hivectl tool add` does: a key made here, its public half admitted by the real spawner's `tool-add`;
    then the tool connects (nats-py `options`)."""
    seed = hive.tmp_path / "tools" / f"{name}.nk"
    grant = ToolGrant(name=name, public_key=mint_seed(seed), send=send, broadcast=broadcast, ask=ask)
    operator = await hive.connect(OPERATOR)
    await bus.call(operator, subjects.operator(subjects.SPAWNER, "tool-add"), grant, ToolGrant, timeout=30)
    return Tool(name, await hive.connect_seed(seed, f"tool-{name}", **options), seed)
