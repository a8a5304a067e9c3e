import asyncio

import pytest
from nats.aio.msg import Msg
from nats.js.api import RetentionPolicy
from pydantic import Field

from hivetest.hive import TestHive
from hyperhive import bus, runtime, streams
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import Empty, SpawnerCommand, WireModel


class AckRequest(WireModel):
    ack: list[str] = Field(default_factory=list)


class AckReply(WireModel):
    acked: int


async def test_endpoint_replies_and_reports_errors_by_code(hive: TestHive) -> None:
    service_nc = await hive.connect("broker")

    async def acked(subject: str, req: AckRequest) -> AckReply:
        if "bad" in req.ack:
            raise HiveError(ErrorCode.NOT_FOUND, "Token 'bad' is unknown.")
        if "bug" in req.ack:
            raise RuntimeError("boom")
        return AckReply(acked=len(req.ack))

    endpoints = [bus.Endpoint("ack", "hive.broker.ack", AckRequest, acked)]
    async with bus.serve(service_nc, name="broker", version="0.1.0", description="t", endpoints=endpoints):
        nc = await hive.connect("operator")
        assert (await bus.call(nc, "hive.broker.ack", AckRequest(ack=["a", "b"]), AckReply)).acked == 2
        with pytest.raises(HiveError) as err:
            await bus.call(nc, "hive.broker.ack", AckRequest(ack=["bad"]), AckReply)
        assert err.value.code == ErrorCode.NOT_FOUND
        assert "'bad'" in err.value.message
        with pytest.raises(HiveError) as err:
            await bus.call(nc, "hive.broker.ack", AckRequest(ack=["bug"]), AckReply)
        assert err.value.code == ErrorCode.INTERNAL
        reply = await nc.request("hive.broker.ack", b"{not json", timeout=5)
        assert reply.headers is not None
        assert reply.headers["Nats-Service-Error-Code"] == ErrorCode.INVALID_REQUEST

        stats = await bus.discover(nc, "STATS", "broker")
        assert [s["name"] for s in stats] == ["broker"]
        assert stats[0]["endpoints"][0]["num_requests"] == 4
        assert stats[0]["endpoints"][0]["num_errors"] == 3


async def test_concurrent_endpoint_does_not_hold_up_the_next_caller(hive: TestHive) -> None:
    service_nc = await hive.connect("broker")
    release = asyncio.Event()

    async def slow(subject: str, req: AckRequest) -> AckReply:
        if req.ack == ["wait"]:
            await release.wait()
        return AckReply(acked=len(req.ack))

    endpoints = [bus.Endpoint("ack", "hive.broker.ack", AckRequest, slow, concurrent=True)]
    async with bus.serve(service_nc, name="broker", version="0.1.0", description="t", endpoints=endpoints):
        nc = await hive.connect("operator")
        waiting = asyncio.create_task(bus.call(nc, "hive.broker.ack", AckRequest(ack=["wait"]), AckReply))
        quick = await bus.call(nc, "hive.broker.ack", AckRequest(ack=["x", "y"]), AckReply)
        assert quick.acked == 2
        assert not waiting.done()
        release.set()
        assert (await waiting).acked == 1
        refused = await nc.request("hive.broker.ack", b'{"ack": 5}', timeout=5)
        assert refused.headers is not None
        assert refused.headers["Nats-Service-Error-Code"] == ErrorCode.INVALID_REQUEST
        [stats] = await bus.discover(nc, "STATS", "broker")
        assert (stats["endpoints"][0]["num_requests"], stats["endpoints"][0]["num_errors"]) == (3, 1)


async def test_call_without_a_service_says_nobody_answers(hive: TestHive) -> None:
    nc = await hive.connect("operator")
    with pytest.raises(HiveError) as err:
        await bus.call(nc, "hive.approver.nothing", Empty(), Empty, timeout=2)
    assert err.value.code == ErrorCode.UNAVAILABLE


async def test_declare_is_idempotent_and_creates_the_designed_streams(hive: TestHive) -> None:
    js = (await hive.connect("spawner")).jetstream()
    await streams.declare(js)
    await streams.declare(js)
    names = {info.config.name for info in await js.streams_info()}
    assert {
        subjects.INBOX_STREAM,
        subjects.EVENTS_STREAM,
        subjects.STATS_STREAM,
        subjects.SPAWNER_CMD_STREAM,
        f"KV_{subjects.POLICY_BUCKET}",
    } <= names
    cmd = await js.stream_info(subjects.SPAWNER_CMD_STREAM)
    assert cmd.config.retention == RetentionPolicy.WORK_QUEUE
    await js.publish(subjects.spawner_cmd(), b"x", headers={"Nats-Msg-Id": "approval-1"})
    again = await js.publish(subjects.spawner_cmd(), b"x", headers={"Nats-Msg-Id": "approval-1"})
    assert again.duplicate


@pytest.mark.parametrize(
    ("failure", "set_aside"),
    [(HiveError(ErrorCode.UNAVAILABLE, "the store is full"), False), (ValueError("a bug"), True)],
    ids=["something-away", "a-bug"],
)
async def test_a_handler_that_fails_because_something_is_away_is_retried_until_it_is_back(
    hive: TestHive, monkeypatch: pytest.MonkeyPatch, failure: Exception, set_aside: bool
) -> None:
    """What is away (NATS, a full store, the database) is waited out however long it lasts; a handler that fails
    for any other reason has its message set aside after `MAX_HANDLER_FAILURES` deliveries."""
    monkeypatch.setattr(bus, "RETRY_SECONDS", 0.01)  # the back-off's scale, not what is asserted
    nc = await hive.connect(subjects.SPAWNER)
    js = nc.jetstream()
    sub = await js.pull_subscribe(subjects.spawner_cmd("t"), durable="t", stream=subjects.SPAWNER_CMD_STREAM)
    poisons = await nc.subscribe(subjects.event("poison_message", "system"))
    command = SpawnerCommand(approval_id=1, action="spawn", agent="bob")
    await js.publish(subjects.spawner_cmd("t"), bus.encode(command))
    tries, handled = 0, asyncio.Event()

    async def handle(msg: Msg, got: SpawnerCommand) -> None:
        nonlocal tries
        tries += 1
        if tries <= bus.MAX_HANDLER_FAILURES + 2:
            raise failure
        await msg.ack()
        handled.set()

    worker = asyncio.create_task(bus.each(nc, sub, SpawnerCommand, handle, batch=1))
    try:
        if set_aside:
            await poisons.next_msg(timeout=30)
            assert tries == bus.MAX_HANDLER_FAILURES
        else:
            await asyncio.wait_for(handled.wait(), 30)
            assert tries == bus.MAX_HANDLER_FAILURES + 3  # delivered past the limit: never set aside
    finally:
        await runtime.cancelled(worker)
