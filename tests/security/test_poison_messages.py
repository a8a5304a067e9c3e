"""Every consumer of a stream or work queue survives a message it cannot read: it sets the message aside
(terminated, never redelivered), records where it was (a `poison_message` event and a log line naming the stream
and sequence), and goes on with the next one — and it never stops again at the next start."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from pathlib import Path

from hive_approver.__main__ import start as start_approver
from hive_broker.__main__ import start as start_broker
from hive_spawner.__main__ import start as start_spawner
from hivetest.agents import make_agent, operator_call
from hivetest.hive import TestHive
from hivetest.services import approver_settings, broker_settings, spawner_settings
from hyperhive import bus
from hyperhive.inbox import Inbox
from hyperhive.wire import subjects
from hyperhive.wire.models import (
    AgentPolicy,
    Approval,
    ApprovalResolved,
    DecisionRequest,
    Event,
    InboxReply,
    InboxRequest,
)

from .conftest import Attacks

POISONS = {
    "an empty message": b"",
    "a NUL byte": b"\x00",
    "bytes that are not UTF-8": b"\xff\xfe\xfa",
    "text that is not JSON": b"hello",
    "a JSON array": b"[]",
    "a JSON number too big for anything": b"1" + b"0" * 5000,
    "an object of the wrong kind": b'{"kind":"hive.something.v9"}',
    "deeply nested JSON": b'{"a":' * 2000 + b"1" + b"}" * 2000,
}


async def poison_events(hive: TestHive, where: str) -> list[dict[str, object]]:
    """Every `poison_message` event recorded on `where` so far."""
    js = (await hive.connect(subjects.SPAWNER)).jetstream()
    info = await js.stream_info(subjects.EVENTS_STREAM, subjects_filter=where)
    count = sum((info.state.subjects or {}).values())
    sub = await js.subscribe(where, ordered_consumer=True)
    found = [json.loads((await sub.next_msg(timeout=5)).data)["data"] for _ in range(count)]
    await sub.unsubscribe()
    return found


async def test_a_harness_inbox_sets_aside_what_it_cannot_read(hive: TestHive, attacks: Attacks) -> None:
    """An empty message ends the pull that carries it across the account boundary (nats-server takes an empty
    answer for the end of a streamed response), so what followed it in that batch comes again after ack_wait, kept
    short here; the broker itself never stores one (its messages carry headers)."""
    async with AsyncExitStack() as stack:
        await start_broker(stack, broker_settings(hive, ack_wait_seconds=2))
        hive.add_agent("bob")
        kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
        await kv.put("bob", bus.encode(AgentPolicy(agent="bob")))
        bob_nc = await hive.connect("bob")
        held = hive.tmp_path / "bob-held.json"
        held.write_text('[1, "$JS.ACK.HIVE_INBOX.inbox-alice.1.1.1.1.0", "../../x", {"a": 1}')  # agent-written junk
        bob = Inbox(bob_nc, "bob", held_file=held)
        await bob.open()  # an unreadable held-tokens file is no reason not to start
        js = (await hive.connect(subjects.BROKER)).jetstream()
        for body in POISONS.values():
            await js.publish(subjects.inbox("bob"), body)
        await js.publish(
            subjects.inbox("bob"),
            b'{"id":"m1","from":"alice","to":"bob","body":"real","sent_at":"2026-01-01T00:00:00Z"}',
        )
        got, _ = await bob.take(max_messages=16, wait=5)
        while not got:  # the poisons came first and were set aside; the real one follows
            got, _ = await bob.take(max_messages=16, wait=5)
        attacks.record("a poison is delivered as a message", succeeded=len(got) != 1)
        attacks.record("poison before a real message hides it", succeeded=[m.body for m in got] != ["real"])
        await bob.ack([m.token for m in got])
        again, _ = await bob.take(max_messages=16, wait=0)
        attacks.record("a poison comes again", succeeded=bool(again))
        consumer = await js.consumer_info(subjects.INBOX_STREAM, "inbox-bob")
        # Each poison's term is confirmed before take() goes on, so the ack floor has passed them all (the real
        # one's ack is not confirmed: it may still be pending here).
        left = consumer.num_pending > 0 or consumer.ack_floor.stream_seq < len(POISONS)
        attacks.record("a poison is left pending", succeeded=left)
        # The operator's view of bob's inbox reads past them too.
        op = await hive.connect("operator")
        view = await bus.call(op, subjects.operator(subjects.BROKER, "inbox"), InboxRequest(owner="bob"), InboxReply)
        attacks.record("the inbox view fails on a poison", succeeded=[e.message.body for e in view.entries] != ["real"])
        recorded = await poison_events(hive, subjects.agent_event("bob", "poison_message"))
        seqs = {r["seq"] for r in recorded}  # an empty one may be set aside twice: it can come again before its term
        for seq, what in enumerate(POISONS, start=1):
            attacks.record(f"{what} in an inbox goes unrecorded", succeeded=seq not in seqs)
        assert {r["stream"] for r in recorded} == {subjects.INBOX_STREAM}
    attacks.none_succeeded()


async def test_the_system_message_relay_sets_aside_what_it_cannot_read(hive: TestHive, attacks: Attacks) -> None:
    async with AsyncExitStack() as stack:
        await start_broker(stack, broker_settings(hive))
        hive.add_agent("alice")
        alice = Inbox(await hive.connect("alice"), "alice")
        await alice.open()
        approver = (await hive.connect(subjects.APPROVER)).jetstream()
        for body in [*POISONS.values(), b'{"type":"approval_resolved","at":"2026-01-01T00:00:00Z","data":{}}']:
            await approver.publish(subjects.event("approval_resolved", "alice"), body)
        resolved = ApprovalResolved(id=7, kind="spawn", agent="bob", status="denied", requested_by="alice")  # type: ignore[call-arg]
        event = Event(type="approval_resolved", agent="bob", at="2026-01-01T00:00:00Z", data=resolved.model_dump())  # type: ignore[arg-type]
        await approver.publish(subjects.event("approval_resolved", "bob"), bus.encode(event))
        got, _ = await alice.take(wait=10)
        attacks.record("poison events stop the relay", succeeded=not got or "#7" not in got[0].body)
        recorded = await poison_events(hive, subjects.event("poison_message", "system"))
        attacks.record("poison events go unrecorded", succeeded=len(recorded) != len(POISONS) + 1)
    attacks.none_succeeded()


async def test_a_spawner_sets_aside_commands_it_cannot_read_and_starts_again(
    hive: TestHive, database_url: str, spawner_state: Path, attacks: Attacks
) -> None:
    queue = (await hive.connect(subjects.APPROVER)).jetstream()
    for body in [*POISONS.values(), b'{"approval_id":1,"action":"spawn","agent":"../../etc"}']:
        await queue.publish(subjects.spawner_cmd(), body)
    async with AsyncExitStack() as stack:
        await start_spawner(stack, spawner_settings(hive, spawner_state))
        await start_broker(stack, broker_settings(hive))
        approver = await start_approver(stack, approver_settings(hive, database_url))
        manager = await make_agent(hive, approver, "manager")
        op = await hive.connect("operator")
        applied = await (await hive.connect(subjects.DASHBOARD)).subscribe(
            f"{subjects.EVENTS_PREFIX}.approval_applied.>"
        )
        pending = await manager.request("spawn", agent="bob", description="after the poison")
        await operator_call(op, "approve", DecisionRequest(id=pending.id), Approval)
        done = ApprovalResolved.model_validate(
            Event.model_validate_json((await applied.next_msg(timeout=60)).data).data
        )
        attacks.record("poison commands stop the spawner", succeeded=(done.id, done.status) != (pending.id, "deployed"))
    commands = await queue.stream_info(subjects.SPAWNER_CMD_STREAM)
    # Every poison is gone from the work queue (the real command after them may still be there if the spawner was
    # stopped between reporting it and acknowledging it: the next one applies it again, idempotently).
    poisons = len(POISONS) + 1
    attacks.record("a poison command stays queued for the next start", succeeded=commands.state.first_seq <= poisons)
    async with AsyncExitStack() as stack:  # and the next start is a start
        await start_spawner(stack, spawner_settings(hive, spawner_state))
    recorded = await poison_events(hive, subjects.event("poison_message", "system"))
    attacks.record("poison commands go unrecorded", succeeded=len(recorded) != len(POISONS) + 1)
    attacks.none_succeeded()
