"""Nothing is lost when the broker process dies: kill -9 between send and recv, and between recv and ack."""

import os
import signal
import sys

from hivetest.hive import TestHive
from hyperhive.process import Child

from .conftest import Agents


def start_broker(hive: TestHive) -> Child:
    settings = hive.settings("broker")
    env = {**os.environ, "HIVE_NATS_URL": settings.nats_url, "PYTHONUNBUFFERED": "1"}
    if settings.nats_creds is not None:
        env["HIVE_NATS_CREDS"] = str(settings.nats_creds)
    child = Child("broker", [sys.executable, "-m", "hive_broker"], env=env).start()
    child.wait_for(r"event=ready", 30)
    return child


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
