"""Operator questions: asked by any agent, answered, cancelled or expired exactly once; answers reach the asker."""

import json
from contextlib import AsyncExitStack

import asyncpg
import pytest
from nats.aio.client import Client

from hive_approver.__main__ import start
from hive_approver.service import Approver
from hive_broker.__main__ import start as start_broker
from hivetest.agents import Caller, make_agent, operator_call
from hivetest.hive import TestHive
from hivetest.services import approver_settings, broker_settings
from hyperhive.inbox import Inbox
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    AnswerRequest,
    AskReply,
    AskRequest,
    Question,
    QuestionRef,
    QuestionsReply,
    QuestionsRequest,
)


async def ask(agent: Caller, question: str, **fields: object) -> AskReply:
    reply: AskReply = await agent.call("ask", AskRequest(question=question, **fields), AskReply)  # type: ignore[arg-type]
    return reply


async def test_an_answer_reaches_the_asker_as_a_system_message(
    hive: TestHive, approver: Approver, alice: Caller, operator_nc: Client
) -> None:
    async with AsyncExitStack() as stack:
        await start_broker(stack, broker_settings(hive))
        asked = await ask(alice, "Deploy now?", options=["yes", "no"])
        pending = await operator_call(operator_nc, "questions", QuestionsRequest(status="pending"), QuestionsReply)
        assert [(q.id, q.asker, q.options) for q in pending.questions] == [(asked.id, "alice", ["yes", "no"])]

        answered = await operator_call(operator_nc, "answer", AnswerRequest(id=asked.id, choices=["yes"]), Question)
        assert (answered.status, answered.answer) == ("answered", "yes")
        inbox = Inbox(alice.nc, "alice")
        await inbox.open()
        [m], _ = await inbox.take(wait=10)
        assert m.sender == "system"
        assert m.body.endswith("yes")


async def test_answers_are_checked_against_the_options(alice: Caller, operator_nc: Client) -> None:
    one = await ask(alice, "Which?", options=["a", "b", "c"])
    several = await ask(alice, "Which ones?", options=["a", "b", "c"], multi=True)
    for bad in (
        AnswerRequest(id=one.id, choices=["d"]),
        AnswerRequest(id=one.id, choices=["a", "b"]),
        AnswerRequest(id=one.id, choices=["a"], text="also this"),
        AnswerRequest(id=one.id),
    ):
        with pytest.raises(HiveError) as err:
            await operator_call(operator_nc, "answer", bad, Question)
        assert err.value.code == ErrorCode.INVALID_REQUEST
    free = await operator_call(operator_nc, "answer", AnswerRequest(id=one.id, text="none of them"), Question)
    assert free.answer == "none of them"
    multi = await operator_call(operator_nc, "answer", AnswerRequest(id=several.id, choices=["a", "c"]), Question)
    assert multi.answer == "a, c"


async def test_a_question_is_settled_once(alice: Caller, operator_nc: Client) -> None:
    asked = await ask(alice, "Go?")
    cancelled = await operator_call(operator_nc, "cancel", QuestionRef(id=asked.id), Question)
    assert (cancelled.status, cancelled.answer) == ("cancelled", "[cancelled]")
    with pytest.raises(HiveError) as err:
        await operator_call(operator_nc, "answer", AnswerRequest(id=asked.id, text="yes"), Question)
    assert err.value.code == ErrorCode.CONFLICT
    assert "cancelled" in err.value.message
    with pytest.raises(HiveError) as err:
        await operator_call(operator_nc, "cancel", QuestionRef(id=9999), Question)
    assert err.value.code == ErrorCode.NOT_FOUND


@pytest.mark.parametrize(
    "payload",
    [
        {"question": ""},
        {"question": "x" * 4001},
        {"question": "q", "ttl_seconds": 6 * 3600 + 1},
        {"question": "q", "ttl_seconds": 0},
        {"question": "q", "options": [""]},
        {"question": "q", "options": [str(i) for i in range(21)]},
    ],
)
async def test_bad_questions_are_refused(alice: Caller, payload: dict[str, object]) -> None:
    reply = await alice.nc.request("hive.agent.alice.ask", json.dumps(payload).encode(), 10)
    assert (reply.headers or {}).get("Nats-Service-Error-Code") == ErrorCode.INVALID_REQUEST


async def test_a_question_expires_on_time(hive: TestHive, alice: Caller, approver: Approver) -> None:
    asked = await ask(alice, "Quick?", ttl_seconds=1)
    q = await settled(hive, approver, asked.id)
    assert (q.status, q.answer) == ("expired", "[expired]")


async def settled(hive: TestHive, approver: Approver, id: int) -> Question:
    """Question `id` once it is settled: we wait for the approver's event (its deadline timer is its own)."""
    sub = await (await hive.connect("dashboard")).subscribe("hive.events.question_answered.>")
    try:
        q = await approver.store.question(id)
        if q.status == "pending":
            await sub.next_msg(timeout=15)
        return await approver.store.question(id)
    finally:
        await sub.unsubscribe()


async def test_a_deadline_that_passed_while_the_approver_was_down_fires_at_start(
    hive: TestHive, database_url: str, operator_nc: Client
) -> None:
    async with AsyncExitStack() as stack:
        approver = await start(stack, approver_settings(hive, database_url))
        alice = await make_agent(hive, approver, "alice")
        asked = await ask(alice, "Still there?", ttl_seconds=3600)
        tool = await alice.request("tool_permission", agent="alice", tool="Bash", ttl_seconds=3600)
    # The approver is down. Time passes (we move the deadlines into the past instead of waiting an hour).
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE questions SET deadline = now() - interval '1 minute'")
        await conn.execute("UPDATE approvals SET deadline = now() - interval '1 minute'")
    finally:
        await conn.close()
    async with AsyncExitStack() as stack:
        approver = await start(stack, approver_settings(hive, database_url))
        q = await settled(hive, approver, asked.id)
        assert (q.status, q.answer) == ("expired", "[expired]")
        assert (await approver.store.approval(tool.id)).status == "expired"
