"""`hivectl up --demo` as an operator would try it: the manager answers, asks to spawn scout, the operator approves,
scout starts in its own sandbox and reports to the manager, and the manager tells the operator. Real processes, real
sandboxes, the real claude CLI; only the model is scripted, and the hive says so."""

import json
from pathlib import Path

from hivectl.layout import Layout
from hyperhive import bus
from hyperhive.inbox import Inbox
from hyperhive.process import Child, free_port
from hyperhive.settings import HiveSettings
from hyperhive.wire.names import OPERATOR

from ..foundation.test_up import HIVECTL, hivectl


async def read_until(inbox: Inbox, text: str) -> list[str]:
    """The operator's messages, as they are pushed, until one contains `text`."""
    bodies: list[str] = []
    while not any(text in b for b in bodies):
        messages, _ = await inbox.take(wait=60)
        assert messages, f"the operator got only {bodies}"
        bodies += [m.body for m in messages]
        await inbox.ack([m.token for m in messages])
    return bodies


async def test_the_demo_shows_the_whole_loop(spawner_state: Path) -> None:
    nats_port = free_port()
    ports = ["--nats-port", str(nats_port), "--postgres-port", str(free_port())]
    argv = [*HIVECTL, "up", "--demo", "--state-dir", str(spawner_state), *ports]
    up = Child("up", argv).start()
    try:
        up.wait_for(r"hyperhive is up", 120)
        up.wait_for(r"the agents' model is SCRIPTED", 5)
        layout = Layout(spawner_state)
        settings = HiveSettings(
            nats_url=json.loads(layout.hive_file.read_text())["nats_url"],
            nats_creds=layout.seed(OPERATOR),
            state_dir=spawner_state,
        )
        async with bus.connected(settings, name="demo-operator", inbox_prefix=f"_INBOX.{OPERATOR}") as nc:
            inbox = Inbox(nc, OPERATOR)
            await inbox.open()

            assert hivectl(spawner_state, "send", "manager", "hello").returncode == 0
            first = await read_until(inbox, "I will ask you to spawn a helper agent, 'scout'")
            assert all(b.startswith("[scripted demo model]") for b in first)

            [approval] = json.loads(hivectl(spawner_state, "--json", "approvals", "--status", "pending").stdout)
            assert (approval["type"], approval["agent"]) == ("spawn", "scout")
            assert hivectl(spawner_state, "approve", str(approval["id"])).returncode == 0
            await read_until(inbox, "scout is running and reported in")

            agents = json.loads(hivectl(spawner_state, "--json", "agents").stdout)
            assert {(a["name"], a["state"]) for a in agents} == {("manager", "running"), ("scout", "running")}
            turn = json.loads(hivectl(spawner_state, "--json", "turn", "scout").stdout)
            assert turn["agent"] == "scout"
            assert turn["turns"] >= 1
    finally:
        up.stop()
