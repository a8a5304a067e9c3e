"""A prompt-injected agent with its real credential tries to make anything be published outside its own plane: by
itself, by the server on its behalf (a reply subject JetStream answers on), or by a service answering it.

Each agent is alone in its own NATS account (docs/decisions/0008-agent-accounts.md): the reply subjects it sets
are remapped by the server into the agent's own account, so a spy in the hive's account sees none of them, and
the hive's streams, consumers and policies are untouched."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

from hivetest.hive import TestHive
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.models import SendReply, SendRequest

from .conftest import Attacks
from .planes import TARGETS, record_damage, scene


async def test_no_reply_subject_lets_an_agent_publish_outside_its_plane(hive: TestHive, attacks: Attacks) -> None:
    async with AsyncExitStack() as stack:
        alice, watcher, spy = await scene(stack, hive)
        inbox = f"{subjects.INBOX_STREAM}.inbox-alice"
        own = await alice.subscribe(subjects.reply_prefix("alice") + ".token")
        # A delivery token of alice's own, to ack with a reply.
        bob = await hive.connect("bob")
        await bus.call(bob, subjects.agent("bob", "send"), SendRequest(to="alice", body="for alice"), SendReply)
        await alice.publish(f"$JS.API.CONSUMER.MSG.NEXT.{inbox}", b'{"batch":1}', reply=own.subject)
        token = (await own.next_msg(timeout=5)).reply
        ways = {
            "an empty pull of its own inbox": (f"$JS.API.CONSUMER.MSG.NEXT.{inbox}", b'{"batch":1,"no_wait":true}'),
            "a pull with +NXT on its own token": (token, b'+NXT {"batch":1,"no_wait":true}'),
            "an acknowledgement that asks for an answer": (token, b"+ACK"),
            "a request to the broker": (subjects.agent("alice", "send"), b'{"to":"alice","body":"hi"}'),
            "a bad request to the broker": (subjects.agent("alice", "send"), b"\x00not json"),
            "an event JetStream acknowledges": (subjects.agent_event("alice", "turn"), b"{}"),
            "a request nobody serves": (subjects.agent("alice", "nothing"), b""),
        }
        echo = await alice.subscribe(subjects.harness("alice", "waiting"))

        async def answer_own_request(target: str) -> None:
            # alice answering a request she sent herself: allowed responses stay in her own account.
            await alice.publish(subjects.harness("alice", "waiting"), b"{}", reply=target)
            await alice.publish((await echo.next_msg(timeout=5)).reply, b"answered")

        for way in [*ways, "answering her own request"]:
            spy.heard.clear()
            for target in TARGETS:
                if way in ways:
                    await alice.publish(*ways[way], reply=target)
                else:
                    await answer_own_request(target)
            # Whatever alice caused has been answered once the same request with a reply of her own is (nothing
            # answers a request nobody serves, not even "no responders": the broker's answer stands in).
            sync = ways["a request to the broker" if way == "a request nobody serves" else way] if way in ways else None
            if sync is not None:
                await alice.request(*sync, timeout=5)
            await watcher.flush()
            for target in TARGETS:
                attacks.record(f"{way} with reply {target}", succeeded=spy.reached(target))
        await record_damage(hive, attacks)
    attacks.none_succeeded()


async def test_an_agent_cannot_publish_outside_its_plane_directly(hive: TestHive, attacks: Attacks) -> None:
    async with AsyncExitStack() as stack:
        alice, watcher, spy = await scene(stack, hive)
        for target in TARGETS:
            await alice.publish(target, json.dumps({"to": "alice", "body": "forged"}).encode())
        await alice.request(subjects.agent("alice", "send"), b'{"to":"alice","body":"marker"}', timeout=5)
        await watcher.flush()
        for target in TARGETS:
            attacks.record(f"a plain publish on {target}", succeeded=spy.reached(target))
        await record_damage(hive, attacks)
    attacks.none_succeeded()
