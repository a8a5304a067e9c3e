import asyncio

import pytest
from nats.js.api import RetentionPolicy
from pydantic import Field

from hivetest.hive import TestHive
from hyperhive import bus, streams
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import Empty, WireModel


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
