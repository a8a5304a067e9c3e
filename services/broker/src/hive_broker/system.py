"""System messages: events from the other services turned into messages `from="system"` in an agent's inbox."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from pydantic import ValidationError

from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentStarted, ApprovalResolved, ContainerCrash, Event, QuestionAnswered
from hyperhive.wire.names import MANAGER

log = logging.getLogger("hive_broker.system")

CONSUMER = "broker-system"
KINDS = ("approval_resolved", "approval_applied", "question_answered", "container_crash", "agent_started")

STATUS_WORDS = {
    "approved": "was approved",
    "applying": "was approved and is being applied",
    "denied": "was denied",
    "expired": "expired without a decision",
    "cancelled": "was cancelled",
    "deployed": "is applied (deployed)",
    "failed": "failed to apply",
}

Deliver = Callable[[str, str, str], Awaitable[None]]
"""deliver(to, body, message_id)"""


def compose(event: Event) -> tuple[str, str] | None:
    """The recipient and text of the system message an event calls for, if any."""
    if event.type in ("approval_resolved", "approval_applied"):
        a = ApprovalResolved.model_validate(event.data)
        if a.kind == "tool_permission":
            return None  # the harness waits for that decision itself; the model need not read about it
        note = f" Note: {a.note}" if a.note else ""
        said = STATUS_WORDS.get(a.status, a.status)
        return a.requested_by, f"Your request #{a.id} ({a.kind} for {a.agent}) {said}.{note}"
    if event.type == "question_answered":
        q = QuestionAnswered.model_validate(event.data)
        said = f"The operator answered your question #{q.id} ({q.question!r}): {q.answer}"
        # A tool has no inbox: it reads the answer itself (`hive.tool.<name>.question`).
        return None if q.asker.startswith(subjects.TOOL_SENDER) else (q.asker, said)
    if event.type == "container_crash":
        c = ContainerCrash.model_validate(event.data)
        code = f" with exit code {c.exit_code}" if c.exit_code is not None else ""
        why = f" ({c.reason})" if c.reason else ""
        return MANAGER, f"Agent {c.agent} stopped unexpectedly{code}{why}. Its state is kept; you may restart it."
    if event.type == "agent_started":
        s = AgentStarted.model_validate(event.data)
        verb = "restarted" if s.restarted else "started"
        return s.agent, f"You were {verb}. Your notes are in /state/notes.md; read them before you go on."
    return None


async def relay(nc: Client, js: JetStreamContext, deliver: Deliver) -> None:
    """Follow HIVE_EVENTS with a durable consumer; each event is acknowledged once its message is stored.

    The message id comes from the event's stream sequence, so an event processed twice (a crash between store and
    ack) is delivered once.
    """
    config = js_api.ConsumerConfig(
        durable_name=CONSUMER,
        filter_subjects=[f"{subjects.EVENTS_PREFIX}.{kind}.>" for kind in KINDS],
        deliver_policy=js_api.DeliverPolicy.NEW,  # a new broker does not replay last week's events
        ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=30,
    )
    await js.add_consumer(subjects.EVENTS_STREAM, config)
    sub = await js.pull_subscribe_bind(CONSUMER, subjects.EVENTS_STREAM)

    async def handle(msg: Msg, event: Event) -> None:
        try:
            composed = compose(event)
        except ValidationError as exc:
            await bus.set_aside(nc, msg, f"a {event.type} event without its data: {exc.errors()[0]['msg']}")
            return
        if composed is not None:
            to, body = composed
            await deliver(to, body, f"system-{msg.metadata.sequence.stream:08d}")
        await msg.ack()

    await bus.each(nc, sub, Event, handle)
