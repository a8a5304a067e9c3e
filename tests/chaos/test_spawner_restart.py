"""A spawner killed while applying a command: its successor takes the command up at once (it used to come back only
after the work queue's 300 s ack_wait), and the approval is applied."""

from __future__ import annotations

from contextlib import AsyncExitStack
from pathlib import Path

from nats.aio.client import Client
from nats.js import api as js_api

from hive_approver.__main__ import start as start_approver
from hive_broker.__main__ import start as start_broker
from hive_spawner.__main__ import start as start_spawner
from hive_spawner.commands import IN_FLIGHT
from hivetest.agents import make_agent, operator_call
from hivetest.hive import TestHive
from hivetest.services import approver_settings, broker_settings, spawner_settings
from hyperhive.wire import subjects
from hyperhive.wire.models import Approval, ApprovalResolved, DecisionRequest, Event


async def test_a_command_a_killed_spawner_was_applying_is_taken_up_at_once(
    hive: TestHive, database_url: str, operator_nc: Client, spawner_state: Path
) -> None:
    async with AsyncExitStack() as stack:
        await start_broker(stack, broker_settings(hive))
        approver = await start_approver(stack, approver_settings(hive, database_url))
        manager = await make_agent(hive, approver, "manager")
        applied = await (await hive.connect("dashboard")).subscribe(f"{subjects.EVENTS_PREFIX}.approval_applied.>")
        pending = await manager.request("spawn", agent="bob", description="a helper")
        await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)

        # The first spawner took the command and died applying it: delivered, never acked, its token left behind.
        js = (await hive.connect(subjects.SPAWNER)).jetstream()
        config = js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.EXPLICIT, ack_wait=300)
        taken = await js.pull_subscribe(
            subjects.spawner_cmd(), durable="spawner-local", stream=subjects.SPAWNER_CMD_STREAM, config=config
        )
        [command] = await taken.fetch(1, timeout=10)
        (spawner_state / "agents").mkdir(parents=True, exist_ok=True)
        (spawner_state / "agents" / IN_FLIGHT).write_text(command.reply)

        await start_spawner(stack, spawner_settings(hive, spawner_state))
        event = Event.model_validate_json((await applied.next_msg(timeout=60)).data)  # not after 300 s
        done = ApprovalResolved.model_validate(event.data)
        assert (done.id, done.status) == (pending.id, "deployed")
