"""Nothing is lost when the broker process dies: kill -9 between send and recv, and between recv and ack."""

import signal

from hivetest.agents import Agents
from hivetest.hive import TestHive
from hyperhive.process import Child, start_service


def start_broker(hive: TestHive) -> Child:
    return start_service("broker", hive.service_env("broker"))


async def test_kill_9_of_the_broker_loses_nothing(hive: TestHive) -> None:
    agents = Agents(hive, broker=None)
    await agents.set_policy("alice", ["bob"])
    await agents.set_policy("bob", [])
    alice = await agents.agent("alice")
    bob = await agents.agent("bob")

    broker = start_broker(hive)
    try:
        sent = await alice.send("bob", "survives a crash")
        broker.stop(signal.SIGKILL)

        broker = start_broker(hive)
        [m] = (await bob.recv(wait=10)).messages
        assert (m.id, m.body) == (sent.id, "survives a crash")
        broker.stop(signal.SIGKILL)  # taken, not yet acked: deliveries do not pass through the broker at all
        await bob.ack([m.token])

        broker = start_broker(hive)
        await bob.restart()
        assert (await bob.recv()).messages == []
    finally:
        broker.stop(signal.SIGTERM)
