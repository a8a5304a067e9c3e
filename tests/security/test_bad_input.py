"""Bad input from an agent or the operator gets a clear `invalid_request` naming the problem — never `internal`,
never stored half-done: NUL characters where PostgreSQL or a process argument would choke, ids outside PostgreSQL's
bigint, numbers with thousands of digits, names that are paths. Unicode that is merely unusual goes through whole."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

from nats.aio.client import Client
from nats.micro.request import ERROR_CODE_HEADER

from hive_approver.service import Approver
from hive_broker.__main__ import start as start_broker
from hivetest.agents import make_agent
from hivetest.hive import TestHive
from hivetest.services import broker_settings
from hyperhive.inbox import Inbox
from hyperhive.wire import subjects

from .conftest import Attacks

BIG = 2**63
HUGE = "1" + "0" * 5000


async def raw(nc: Client, subject: str, body: dict[str, object] | bytes) -> str | None:
    """Send `body` as it is; the error code of the answer, or None when it was taken."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    msg = await nc.request(subject, data, timeout=10)
    return (msg.headers or {}).get(ERROR_CODE_HEADER)


async def test_bad_input_is_refused_as_invalid_never_internal(
    hive: TestHive,
    approver: Approver,
    attacks: Attacks,
) -> None:
    alice = (await make_agent(hive, approver, "alice")).nc
    manager = (await make_agent(hive, approver, "manager")).nc
    op = await hive.connect("operator")
    agent_plane = {
        "a question with a NUL": ("ask", {"question": "ok?\x00", "options": ["yes"]}),
        "an option with a NUL": ("ask", {"question": "ok?", "options": ["y\x00es"]}),
        "a description with a NUL": ("request.spawn", {"agent": "bob", "description": "new\x00agent"}),
        "a tool input with a NUL": (
            "request.tool_permission",
            {"agent": "alice", "tool": "Bash", "input": {"command": "ls\x00; rm -rf /"}},
        ),
        "a tool input key with a NUL": (
            "request.tool_permission",
            {"agent": "alice", "tool": "Bash", "input": {"comm\x00and": "ls"}},
        ),
        "a wait on id 2**63": ("decision", {"id": BIG, "wait_seconds": 0}),
        "a wait on a negative id": ("decision", {"id": -1}),
        "a wait on an id of 5000 digits": ("decision", HUGE.join(['{"id":', "}"]).encode()),
        "a wait of a float id": ("decision", {"id": 1.5}),
        "a wait far too long": ("decision", {"id": 1, "wait_seconds": 1e308}),
        "a TTL of 2**63 seconds": ("ask", {"question": "q", "ttl_seconds": BIG}),
    }
    for what, (verb, body) in agent_plane.items():
        code = await raw(alice, subjects.agent("alice", verb), body)  # type: ignore[arg-type]
        attacks.record(f"{what}: answered {code}", succeeded=code != "invalid_request")
    for name in ("../../etc", "bob/../../x", "bob\x00", "Bob", "b" * 300, ".hidden"):
        code = await raw(manager, subjects.agent("manager", "request.spawn"), {"agent": name, "description": "x"})
        refused = code in ("invalid_name", "invalid_request")  # a NUL is refused before the name is read
        attacks.record(f"the manager spawns {name!r}: answered {code}", succeeded=not refused)
    operator_plane = {
        "an approval id of 2**63": ("approve", {"id": BIG}),
        "an approval id of -2**63": ("deny", {"id": -BIG}),
        "an approval id of 5000 digits": ("approve", HUGE.join(['{"id":', "}"]).encode()),
        "a note with a NUL": ("deny", {"id": 1, "note": "no\x00"}),
        "an answer with a NUL": ("answer", {"id": 1, "text": "a\x00"}),
        "a choice with a NUL": ("answer", {"id": 1, "choices": ["a\x00"]}),
        "a question id of 2**64": ("cancel", {"id": 2**64}),
        "bytes that are not UTF-8": ("approve", b'{"id": 1, "note": "\xff"}'),
    }
    for what, (verb, body) in operator_plane.items():
        code = await raw(op, subjects.operator(subjects.APPROVER, verb), body)  # type: ignore[arg-type]
        attacks.record(f"{what}: answered {code}", succeeded=code not in ("invalid_request", "invalid_body"))
    # The largest id PostgreSQL can hold is a clean "not found", not a crash.
    code = await raw(op, subjects.operator(subjects.APPROVER, "approve"), {"id": BIG - 1})
    attacks.record(f"the largest bigint id: answered {code}", succeeded=code != "not_found")
    attacks.none_succeeded()


async def test_unicode_arrives_whole_and_nul_never_reaches_an_inbox(hive: TestHive, attacks: Attacks) -> None:
    async with AsyncExitStack() as stack:
        broker = await start_broker(stack, broker_settings(hive))
        kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
        for name in ("alice", "bob"):
            hive.add_agent(name)
            await kv.put(name, json.dumps({"agent": name, "allowedRecipients": ["bob"]}).encode())
        await broker.policy.caught_up((await kv.status()).stream_info.state.last_seq)
        alice = await hive.connect("alice")
        bob = Inbox(await hive.connect("bob"), "bob")
        await bob.open()
        strange = "héllo 🐝 \u202eevil\u202c \u0301 \U0010ffff 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 " + "ß" * 1000
        for what, body in {
            "a body with a NUL": "hi\x00there",
            "a lone surrogate": b'{"to":"bob","body":"\\ud800"}',
        }.items():
            payload = body if isinstance(body, bytes) else {"to": "bob", "body": body}
            code = await raw(alice, subjects.agent("alice", "send"), payload)
            attacks.record(f"{what}: answered {code}", succeeded=code != "invalid_request")
        assert await raw(alice, subjects.agent("alice", "send"), {"to": "bob", "body": strange}) is None
        got, _ = await bob.take(max_messages=8, wait=5)
        attacks.record("unusual unicode was changed or lost", succeeded=[m.body for m in got] != [strange])
    attacks.none_succeeded()
