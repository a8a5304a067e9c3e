"""A tool with its real key (a leaked CI credential, say) tries to act beyond its grant: to publish as an agent,
the operator or another tool, to make the server or a service publish for it through a reply subject, to read an
inbox, to reach JetStream or KV (its own grant included). A tool is alone in its own NATS account, importing only
its granted verbs, so none of it reaches the hive's account."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path

from nats.aio.msg import Msg

from hive_spawner.__main__ import start as start_spawner
from hivetest.agents import admit_tool
from hivetest.hive import TestHive
from hivetest.services import spawner_settings
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.models import DepthsReply, Empty, SendReply, SendRequest, ToolGrant
from hyperhive.wire.names import OPERATOR

from .conftest import Attacks
from .planes import TARGETS, record_damage, scene

AS_OTHERS = [
    subjects.agent("alice", "send"),
    subjects.agent("bob", "ask"),
    subjects.operator(subjects.BROKER, "send"),
    subjects.operator(subjects.SPAWNER, "tool-add"),
    subjects.tool("other", "send"),
    subjects.tool("ci", "ask"),  # a verb it was not granted
    "$KV.hive-tools.ci",
    "$JS.API.STREAM.INFO.KV_hive-tools",
]
WATCHED = [">", "hive.>", "hive.inbox.>", "$JS.API.>", "$KV.>", "_INBOX.operator.>", "_INBOX.alice.>"]


async def test_a_tool_cannot_act_beyond_its_grant(hive: TestHive, attacks: Attacks, spawner_state: Path) -> None:
    async with AsyncExitStack() as stack:
        alice, watcher, spy = await scene(stack, hive)
        await start_spawner(stack, spawner_settings(hive, spawner_state))
        ci = await admit_tool(hive, "ci", ["alice"])
        # Reading: what the tool hears while the hive works (the operator asks, alice writes).
        heard: dict[str, list[str]] = {pattern: [] for pattern in WATCHED}
        for pattern in WATCHED:

            async def hear(msg: Msg, pattern: str = pattern) -> None:
                heard[pattern].append(msg.subject)

            await ci.nc.subscribe(pattern, cb=hear)
        await ci.nc.flush()
        operator = await hive.connect(OPERATOR)
        await bus.call(operator, subjects.operator(subjects.BROKER, "depths"), Empty(), DepthsReply)
        await bus.call(alice, subjects.agent("alice", "send"), SendRequest(to="alice", body="to herself"), SendReply)
        await ci.nc.flush()
        for pattern, seen in heard.items():
            attacks.record(f"ci heard {pattern}: {seen[:3]}", succeeded=bool(seen))
        # Publishing: as others, and through reply subjects on its own verb.
        spy.heard.clear()  # what the admission itself published is the spawner's
        send = subjects.tool("ci", "send")
        good, bad = json.dumps({"to": "alice", "body": "ok"}).encode(), b"\x00not json"
        for target in [*TARGETS, *AS_OTHERS]:
            await ci.nc.publish(target, json.dumps({"to": "alice", "body": "forged"}).encode())
            await ci.nc.publish(send, good, reply=target)
            await ci.nc.publish(send, bad, reply=target)
        await ci.nc.request(send, good, timeout=5)  # every earlier publish of the tool has been handled by now
        await watcher.flush()
        for target in [*TARGETS, *AS_OTHERS]:
            attacks.record(f"ci reached {target}", succeeded=spy.reached(target))
        kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.TOOLS_BUCKET)
        grant = ToolGrant.model_validate_json((await kv.get("ci")).value or b"")
        attacks.record("ci changed its own grant", succeeded=(grant.send, grant.broadcast) != (["alice"], False))
        await record_damage(hive, attacks)
    attacks.none_succeeded()
