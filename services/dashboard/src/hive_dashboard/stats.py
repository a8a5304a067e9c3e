"""The stats: which series there are, how a sample from HIVE_STATS becomes rows of `stats`, and how a series is read
back, bucketed on the server so that a long window is a few hundred points (`GET /api/stats`).

Everything in a sample is the agent's word (its harness runs in its container, and the agent holds the same
credentials), so a sample is checked before it is written: its kind, its names, its numbers. Who it is about comes
from the subject, which the NATS server vouches for, and when from the stream's own timestamp.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, get_args

from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import ApprovalQueue, ExitClass, InboxDepths, NotesCompacted, TurnStats
from hyperhive.wire.names import Party, check_agent_ref

HIVE = "*"
"""The `agent` of the hive-wide series: no agent's name can be it."""
MAX_FIGURES = 200
"""A sample with more figures than this (an agent naming thousands of tools) is refused whole."""
MAX_VALUE = 1e15
TOOL_NAME = re.compile(r"[A-Za-z0-9_.:@-]{1,128}")
EXITS = get_args(ExitClass)
PARTIES = get_args(Party)

PER_TURN = ("turn.duration_ms", "turn.tool_calls", "turn.cost_usd", "turn.input_tokens", "turn.output_tokens")
FAMILIES = {"tool": None, "turn.exit": EXITS, "turn.sent": PARTIES, "turn.received": PARTIES}
"""Series that come in families, and the names a family may have (None: a tool's name, `TOOL_NAME`)."""
SINCE_LAST_TURN = "since_last_turn"
AGENT_KEYS = frozenset({"turns", *PER_TURN, "inbox.depth", "notes.bytes", SINCE_LAST_TURN})
HIVE_KEYS = frozenset({"turns", "turn.cost_usd", "turn.input_tokens", "turn.output_tokens", "approvals.pending"})
HIVE_FAMILIES = frozenset({"turn.exit"})
"""What is also written hive-wide (under `*`) as it is recorded, so a hive-wide series is one range of the index
too, not a scan of every agent's rows."""

Sample = Annotated[TurnStats | NotesCompacted | ApprovalQueue | InboxDepths, Field(discriminator="kind")]
SAMPLE: TypeAdapter[TurnStats | NotesCompacted | ApprovalQueue | InboxDepths] = TypeAdapter(Sample)

Row = tuple[str, str, datetime, int, float]
"""A figure: agent, key, ts, the stream sequence of its sample, value (the sequence goes to `stats_samples`)."""


class BadSample(ValueError):
    """A stats message that cannot be recorded; the sentence says why."""


def figures(sample: TurnStats | NotesCompacted | ApprovalQueue) -> list[tuple[str, float]]:
    """A sample's figures as (key, value): what one turn, one notes compaction or one queue change says."""
    if isinstance(sample, ApprovalQueue):
        return [("approvals.pending", sample.pending)]
    if isinstance(sample, NotesCompacted):
        return [("notes.bytes", sample.after_bytes)]
    bad = [name for name in sample.tool_calls if not TOOL_NAME.fullmatch(name)]
    if bad:
        raise BadSample(f"tool name {bad[0][:40]!r} is not a tool's name")
    out: list[tuple[str, float]] = [
        ("turns", 1),
        ("turn.duration_ms", sample.duration_ms),
        ("turn.tool_calls", sum(sample.tool_calls.values())),
        ("turn.cost_usd", sample.cost_usd),
        ("turn.input_tokens", sample.input_tokens),
        ("turn.output_tokens", sample.output_tokens),
        (f"turn.exit.{sample.exit_class}", 1),
        ("inbox.depth", sample.inbox_depth),
        ("notes.bytes", sample.notes_bytes),
    ]
    out += [(f"tool.{name}", n) for name, n in sample.tool_calls.items()]
    out += [(f"turn.sent.{party}", n) for party, n in sample.sent.items()]
    out += [(f"turn.received.{party}", n) for party, n in sample.received.items()]
    return out


def about(subject: str, sample: TurnStats | NotesCompacted | ApprovalQueue) -> str:
    """Whom a sample is about, from its subject alone: an agent's own stats subject, or the approver's queue."""
    if subject == subjects.APPROVAL_QUEUE and isinstance(sample, ApprovalQueue):
        return HIVE
    if isinstance(sample, ApprovalQueue) or not subject.endswith(f".{subjects.STATS}"):
        raise BadSample(f"a {sample.kind} does not belong on {subject[:80]!r}")
    try:
        return subjects.caller(subject)
    except HiveError as exc:
        raise BadSample(exc.message) from None


def rows_of(subject: str, data: bytes, seq: int, ts: datetime) -> list[Row]:
    """The rows one stats message becomes (its agent's, and the hive-wide copies); `BadSample` if it cannot be."""
    try:
        sample = SAMPLE.validate_json(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise BadSample(f"not a stats sample: {'.'.join(map(str, first['loc']))} {first['msg']}") from None
    if isinstance(sample, InboxDepths):
        return depth_rows(subject, sample, seq, ts)
    agent = about(subject, sample)
    pairs = figures(sample)
    if len(pairs) > MAX_FIGURES:
        raise BadSample(f"{len(pairs)} figures in one sample; at most {MAX_FIGURES}")
    for key, value in pairs:
        if not math.isfinite(value) or abs(value) > MAX_VALUE:
            raise BadSample(f"{key} is {value!r}, not a figure")
    rows = [(agent, key, ts, seq, float(value)) for key, value in pairs]
    if agent != HIVE:
        rows += [(HIVE, key, ts, seq, float(v)) for key, v in pairs if key in HIVE_KEYS or family(key) in HIVE_FAMILIES]
    return rows


def depth_rows(subject: str, sample: InboxDepths, seq: int, ts: datetime) -> list[Row]:
    """The broker's sample of the inboxes' depths: an `inbox.depth` row for each agent it names."""
    if subject != subjects.INBOX_DEPTHS:
        raise BadSample(f"a {sample.kind} does not belong on {subject[:80]!r}")
    rows = []
    for agent, depth in sample.depths.items():
        try:
            check_agent_ref(agent)
        except HiveError as exc:
            raise BadSample(exc.message) from None
        if depth > MAX_VALUE:
            raise BadSample(f"the depth of {agent} is {depth}, not a figure")
        rows.append((agent, "inbox.depth", ts, seq, float(depth)))
    return rows


def family(key: str) -> str:
    return key.rpartition(".")[0]


def check_key(key: str, hive_wide: bool) -> str:
    """A series asked for by name: one there is, for an agent or hive-wide; else `invalid_request` naming it."""
    keys, families = (HIVE_KEYS, HIVE_FAMILIES) if hive_wide else (AGENT_KEYS, frozenset(FAMILIES))
    if key in keys:
        return key
    head, _, name = key.partition(".") if key.startswith("tool.") else key.rpartition(".")  # a tool's name has dots
    if head in families:
        names = FAMILIES[head]
        if TOOL_NAME.fullmatch(name) if names is None else name in names:
            return key
    where = "hive-wide" if hive_wide else "for an agent"
    raise HiveError(
        ErrorCode.INVALID_REQUEST,
        f"There is no series {key[:60]!r} {where}; there are {', '.join(sorted(keys))} and the families "
        f"{', '.join(sorted(f + '.<name>' for f in families))}.",
    )


def check_family(name: str, hive_wide: bool) -> str:
    if name in (HIVE_FAMILIES if hive_wide else FAMILIES):
        return name
    raise HiveError(
        ErrorCode.INVALID_REQUEST,
        f"There is no family {name[:60]!r}{' hive-wide' if hive_wide else ''}; there are "
        f"{', '.join(sorted(HIVE_FAMILIES if hive_wide else FAMILIES))}.",
    )


# ── reading ──────────────────────────────────────────────────────────────────

MAX_POINTS = 500
STEPS = (60, 300, 900, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 86400, 7 * 86400)
"""Bucket widths, seconds: the smallest that keeps a window within `MAX_POINTS` buckets."""
MAX_WINDOW = timedelta(days=400)
DEFAULT_WINDOW = timedelta(days=1)


class StatsPoint(BaseModel):
    t: datetime = Field(description="The bucket's start.")
    n: int = Field(description="Samples in the bucket (for `turns`, the turns: turns/min is n / (step / 60)).")
    sum: float
    min: float
    max: float
    avg: float
    p50: float
    p95: float
    last: float = Field(description="The bucket's latest value (a gauge's reading: inbox depth, notes size).")


class StatsSeries(BaseModel):
    agent: str = Field(description="The agent, or `*` for the hive.")
    key: str
    since: datetime
    until: datetime
    step_seconds: int = Field(description="The buckets' width, chosen by the server from the window.")
    points: list[StatsPoint]


class StatsTotals(BaseModel):
    agent: str
    family: str
    since: datetime
    until: datetime
    totals: dict[str, float] = Field(description="Each name of the family (a tool, an exit class, a party): its sum.")


class AgentTotal(BaseModel):
    agent: str
    total: float


class TopAgents(BaseModel):
    key: str
    since: datetime
    until: datetime
    agents: list[AgentTotal]


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    @property
    def step(self) -> int:
        span = (self.until - self.since).total_seconds()
        return next((s for s in STEPS if span / s <= MAX_POINTS), STEPS[-1])


def window(since: datetime | None, until: datetime | None, now: datetime | None = None) -> Window:
    """The window asked for (naive times are UTC): by default the last day; `invalid_request` when it is empty,
    backwards or longer than `MAX_WINDOW`."""
    until = _utc(until) if until is not None else (now or datetime.now(UTC))
    since = _utc(since) if since is not None else until - DEFAULT_WINDOW
    if since >= until:
        raise HiveError(
            ErrorCode.INVALID_REQUEST, f"since ({since.isoformat()}) is not before until ({until.isoformat()})."
        )
    if until - since > MAX_WINDOW:
        raise HiveError(ErrorCode.INVALID_REQUEST, f"The window is longer than {MAX_WINDOW.days} days; ask for less.")
    return Window(since, until)


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t


def agent_of(agent: str | None) -> str:
    """The `agent` parameter: an agent's name (the hive's rule), or none for the hive."""
    return HIVE if agent is None else check_agent_ref(agent)


BUCKETED = """
SELECT date_bin(make_interval(secs => $5), ts, 'epoch') AS t, count(*) AS n, sum(value) AS sum, min(value) AS min,
       max(value) AS max, avg(value) AS avg,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY value) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY value) AS p95,
       (array_agg(value ORDER BY ts DESC))[1] AS last
FROM stats WHERE agent = $1 AND key = $2 AND ts >= $3 AND ts < $4
GROUP BY 1 ORDER BY 1
"""
LAST_TURNS = """
SELECT date_bin(make_interval(secs => $4), ts, 'epoch') AS t, max(ts) AS last
FROM stats WHERE agent = $1 AND key = 'turns' AND ts >= $2 AND ts < $3
GROUP BY 1 ORDER BY 1
"""
LAST_TURN_BEFORE = "SELECT max(ts) FROM stats WHERE agent = $1 AND key = 'turns' AND ts < $2"


async def series(conn: Any, agent: str, key: str, w: Window) -> StatsSeries:
    """One series over a window, bucketed; `since_last_turn` is derived from the turns (at each bucket's end, how
    long since the turn before it)."""
    if key == SINCE_LAST_TURN:
        points = await _since_last_turn(conn, agent, w)
    else:
        rows = await conn.fetch(BUCKETED, agent, key, w.since, w.until, w.step)
        points = [StatsPoint(**dict(r)) for r in rows]
    return StatsSeries(agent=agent, key=key, since=w.since, until=w.until, step_seconds=w.step, points=points)


async def _since_last_turn(conn: Any, agent: str, w: Window) -> list[StatsPoint]:
    last: datetime | None = await conn.fetchval(LAST_TURN_BEFORE, agent, w.since)
    latest = {r["t"]: r["last"] for r in await conn.fetch(LAST_TURNS, agent, w.since, w.until, w.step)}
    step = timedelta(seconds=w.step)
    end = min(w.until, datetime.now(UTC))
    t = datetime.fromtimestamp(w.since.timestamp() // w.step * w.step, UTC)
    points = []
    while t < end:
        last = latest.get(t, last)
        if last is not None:
            v = (min(t + step, end) - last).total_seconds()
            points.append(StatsPoint(t=t, n=1, sum=v, min=v, max=v, avg=v, p50=v, p95=v, last=v))
        t += step
    return points


async def totals(conn: Any, agent: str, name: str, w: Window) -> StatsTotals:
    """A family's sums over a window (exit classes, tools, parties): one range of the index, `key` sorting bytewise."""
    prefix = name + "."
    rows = await conn.fetch(
        "SELECT key, sum(value) AS total FROM stats WHERE agent = $1 AND key >= $2 AND key < $3 "
        "AND ts >= $4 AND ts < $5 GROUP BY key ORDER BY key",
        agent,
        prefix,
        name + "/",  # the next string after every `<name>.…` in bytewise order
        w.since,
        w.until,
    )
    found = {r["key"].removeprefix(prefix): float(r["total"]) for r in rows}
    return StatsTotals(agent=agent, family=name, since=w.since, until=w.until, totals=found)


TOP = """
WITH RECURSIVE agents AS (
    SELECT min(agent) AS agent FROM stats
    UNION ALL
    SELECT (SELECT min(agent) FROM stats WHERE agent > agents.agent) FROM agents WHERE agents.agent IS NOT NULL
)
SELECT a.agent, s.total FROM agents a
CROSS JOIN LATERAL (SELECT sum(value) AS total FROM stats WHERE agent = a.agent AND key = $1 AND ts >= $3 AND ts < $4) s
WHERE a.agent IS NOT NULL AND a.agent <> $2 AND s.total IS NOT NULL
ORDER BY s.total DESC, a.agent LIMIT $5
"""
"""Each agent's sum, the agents found by skipping along the index (one probe an agent), not by reading every row."""
TOP_KEYS = ("turn.cost_usd", "turn.input_tokens", "turn.output_tokens", "turns")


async def top(conn: Any, key: str, w: Window, limit: int) -> TopAgents:
    """The agents with the largest sums of `key` over the window (the hive page's top agents by cost)."""
    if key not in TOP_KEYS:
        raise HiveError(ErrorCode.INVALID_REQUEST, f"Agents are ranked by {', '.join(TOP_KEYS)}, not {key[:60]!r}.")
    rows = await conn.fetch(TOP, key, HIVE, w.since, w.until, limit)
    agents = [AgentTotal(agent=r["agent"], total=float(r["total"])) for r in rows]
    return TopAgents(key=key, since=w.since, until=w.until, agents=agents)
