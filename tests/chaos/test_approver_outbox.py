"""An approver killed between committing a decision and publishing what it calls for: the decision, its
`approval_resolved` event and its spawner command left the database together (the outbox), so the next approver
publishes them at its start — the manager is told, the command is queued once — and the operator who retries is
answered with the decision they took, not told it was taken."""

from __future__ import annotations

from contextlib import AsyncExitStack

from nats.aio.client import Client

from hive_approver.__main__ import start as start_approver
from hive_approver.service import Approver
from hivetest.agents import Caller, make_agent, operator_call
from hivetest.hive import TestHive
from hivetest.services import TestSpawner, approver_settings
from hyperhive.wire import subjects
from hyperhive.wire.models import Approval, ApprovalResolved, DecisionRequest, Event
from hyperhive.wire.names import OPERATOR


async def test_what_a_killed_approver_committed_is_published_by_the_next(
    hive: TestHive,
    database_url: str,
    approver: Approver,
    manager: Caller,
    spawner: TestSpawner,
    operator_nc: Client,
) -> None:
    spawner.knows("abc1234")
    await make_agent(hive, approver, "alice")
    pending = await manager.request("apply_commit", agent="alice", commit_ref="abc1234")
    resolved = await (await hive.connect("dashboard")).subscribe(f"{subjects.EVENTS_PREFIX}.approval_resolved.>")
    # The operator's decision is committed — with what it calls for — and the approver dies before publishing it.
    decided = await approver.store.transition(
        pending.id, expect=("pending",), to="applying", by=OPERATOR, then=approver.decided_calls_for
    )
    async with AsyncExitStack() as stack:
        await start_approver(stack, approver_settings(hive, database_url))  # the next approver (a replica, here)
        event = Event.model_validate_json((await resolved.next_msg(timeout=30)).data)
        told = ApprovalResolved.model_validate(event.data)
        assert (told.id, told.status, told.requested_by) == (decided.id, "applying", "manager")
        retried = await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
        assert retried.id == pending.id  # the decision they took, not "already applying by operator"
        assert retried.status in ("applying", "deployed")
    assert [c.approval_id for c in spawner.commands] == [pending.id]  # queued once
