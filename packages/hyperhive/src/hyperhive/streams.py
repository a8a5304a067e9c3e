"""The hive's JetStream layout: its streams and KV buckets (policies, tools), declared the same way by every service
at its start (idempotent), so no service depends on another having started first."""

from __future__ import annotations

import nats.js.errors
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BadRequestError, NotFoundError

from hyperhive.wire import subjects

DAY = 24 * 3600.0

INBOX_LIMIT = 10_000
"""Messages one inbox may hold; past it a send is refused (`inbox_full`) once its delivered ones have made way."""

STREAMS = (
    js_api.StreamConfig(
        name=subjects.INBOX_STREAM,
        description="Per-agent inboxes; one durable consumer per agent.",
        subjects=[f"{subjects.INBOX_PREFIX}.>"],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        duplicate_window=120.0,
        max_msgs_per_subject=INBOX_LIMIT,
        discard=js_api.DiscardPolicy.NEW,  # a full inbox refuses the new message; it never drops an unread one
        discard_new_per_subject=True,
    ),
    js_api.StreamConfig(
        name=subjects.EVENTS_STREAM,
        description="Everything that happens in the hive, for live views that resume by sequence.",
        subjects=[f"{subjects.EVENTS_PREFIX}.>", f"{subjects.AGENT_PREFIX}.*.event.>"],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        max_age=7 * DAY,
        duplicate_window=120.0,
    ),
    js_api.StreamConfig(
        name=subjects.STATS_STREAM,
        description="Stats samples on their way to PostgreSQL.",
        subjects=[f"{subjects.STATS_PREFIX}.>", f"{subjects.AGENT_PREFIX}.*.{subjects.STATS}"],
        retention=js_api.RetentionPolicy.LIMITS,
        storage=js_api.StorageType.FILE,
        max_age=1 * DAY,
    ),
    js_api.StreamConfig(
        name=subjects.SPAWNER_CMD_STREAM,
        description="Approved actions for the spawners; applied once, deduplicated by approval id.",
        subjects=[f"{subjects.SPAWNER_CMD_PREFIX}.>"],
        retention=js_api.RetentionPolicy.WORK_QUEUE,
        storage=js_api.StorageType.FILE,
        duplicate_window=DAY,
    ),
)


BUCKETS = {
    subjects.POLICY_BUCKET: "Applied agent policies, written by the spawner.",
    subjects.TOOLS_BUCKET: "The tools the operator admitted and what each may do, written by the spawner.",
}


async def declare(js: JetStreamContext) -> None:
    """Create or update the hive's streams and KV buckets; safe to run from every service at every start."""
    for config in STREAMS:
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
    for bucket, description in BUCKETS.items():
        try:
            await js.key_value(bucket)
        except (NotFoundError, nats.js.errors.BucketNotFoundError):
            await js.create_key_value(
                js_api.KeyValueConfig(
                    bucket=bucket, description=description, history=5, storage=js_api.StorageType.FILE
                )
            )
