"""Every NATS subject, stream and bucket name of the hive, built by small functions next to their constants.

Identity is the subject: the token after `hive.agent.` is the caller, and the NATS server's permissions make sure
an agent can only publish under its own name. Services read the caller with `caller()`, never from a body.
"""

from __future__ import annotations

from hyperhive.wire import names
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.names import check_agent_ref

ROOT = "hive"

# Agent plane: hive.agent.<name>.<verb>, published only by that agent.
AGENT_PREFIX = f"{ROOT}.agent"
SEND = "send"
OPEN = "open"
ASK = "ask"
STATS = "stats"
REQUEST = "request"
DECISION = "decision"
HEARTBEAT = "heartbeat"
PTY = "pty"

# Harness plane: hive.harness.<name>.<verb>, served by that agent's harness.
HARNESS_PREFIX = f"{ROOT}.harness"

# Tool plane: hive.tool.<name>.<verb>, published only by that tool (a script or service the operator admitted).
TOOL_PREFIX = f"{ROOT}.tool"
TOOL_SENDER = names.TOOL_SENDER  # what a tool's messages say they are from: `tool:<name>`

# Operator plane: NATS micro services, discoverable with $SRV.PING/INFO/STATS.
BROKER = "broker"
APPROVER = "approver"
SPAWNER = "spawner"
DASHBOARD = "dashboard"
SERVICES = (BROKER, APPROVER, SPAWNER, DASHBOARD)

# JetStream.
EVENTS_STREAM = "HIVE_EVENTS"
EVENTS_PREFIX = f"{ROOT}.events"
INBOX_STREAM = "HIVE_INBOX"
INBOX_PREFIX = f"{ROOT}.inbox"
STATS_STREAM = "HIVE_STATS"
STATS_PREFIX = f"{ROOT}.stats"
APPROVAL_QUEUE = f"{STATS_PREFIX}.approvals"  # the approver's `ApprovalQueue` samples
INBOX_DEPTHS = f"{STATS_PREFIX}.inboxes"  # the broker's `InboxDepths` samples
SPAWNER_CMD_STREAM = "HIVE_SPAWNER_CMD"
SPAWNER_CMD_PREFIX = f"{ROOT}.spawner.cmd"
POLICY_BUCKET = "hive-policy"
TOOLS_BUCKET = "hive-tools"


def agent(name: str, verb: str) -> str:
    """`hive.agent.<name>.<verb>`: what agent `name` publishes to call `verb`."""
    return f"{AGENT_PREFIX}.{check_agent_ref(name)}.{verb}"


def agent_any(verb: str) -> str:
    """`hive.agent.*.<verb>`: what a service subscribes to serve `verb` for every agent."""
    return f"{AGENT_PREFIX}.*.{verb}"


def caller(subject: str) -> str:
    """The agent that published on an agent-plane subject; the server's permissions vouch for it."""
    return _parts(subject, AGENT_PREFIX)[0]


def verb_of(subject: str, plane: str = AGENT_PREFIX) -> str:
    """What follows `<plane>.<name>.` (`hive.agent.bob.lifecycle.stop` → `lifecycle.stop`)."""
    return _parts(subject, plane)[1]


def tool(name: str, verb: str) -> str:
    """`hive.tool.<name>.<verb>`: what tool `name` publishes to call `verb`."""
    return f"{TOOL_PREFIX}.{check_agent_ref(name)}.{verb}"


def tool_any(verb: str) -> str:
    """`hive.tool.*.<verb>`: what a service subscribes to serve `verb` for every tool."""
    return f"{TOOL_PREFIX}.*.{verb}"


def tool_caller(subject: str) -> str:
    """The tool that published on a tool-plane subject; the server's permissions vouch for it."""
    return _parts(subject, TOOL_PREFIX)[0]


def tool_sender(name: str) -> str:
    """`tool:<name>`: the sender a tool's messages carry, which no agent's name can be."""
    return f"{TOOL_SENDER}{check_agent_ref(name)}"


def _parts(subject: str, plane: str) -> tuple[str, str]:
    head, _, rest = subject.removeprefix(f"{plane}.").partition(".")
    if not subject.startswith(f"{plane}.") or not rest:
        raise HiveError(ErrorCode.INVALID_REQUEST, f"Subject {subject!r} is not on the {plane} plane.")
    return check_agent_ref(head), rest


def harness(name: str, verb: str) -> str:
    """`hive.harness.<name>.<verb>`: served by agent `name`'s harness."""
    return f"{HARNESS_PREFIX}.{check_agent_ref(name)}.{verb}"


def operator(service: str, verb: str) -> str:
    """`hive.<service>.<verb>`: an operator-plane endpoint of a host service."""
    if service not in SERVICES:
        raise ValueError(f"unknown service {service!r}")
    return f"{ROOT}.{service}.{verb}"


def event(kind: str, about: str) -> str:
    """`hive.events.<kind>.<about>`: an event into HIVE_EVENTS, about an agent, a tool (`tool:<name>`), `operator`
    or `system`."""
    if about not in ("operator", "system"):
        check_agent_ref(about.removeprefix(TOOL_SENDER))
    return f"{EVENTS_PREFIX}.{kind}.{about}"


def agent_event(name: str, kind: str) -> str:
    """`hive.agent.<name>.event.<kind>`: a harness's own events, also captured by HIVE_EVENTS."""
    return agent(name, f"event.{kind}")


def inbox(name: str) -> str:
    """`hive.inbox.<name>`: the JetStream subject holding agent `name`'s (or the operator's) inbox."""
    if name != "operator":
        check_agent_ref(name)
    return f"{INBOX_PREFIX}.{name}"


def spawner_cmd(host: str = "local") -> str:
    """`hive.spawner.cmd.<host>`: the work queue of the spawner on `host`."""
    return f"{SPAWNER_CMD_PREFIX}.{host}"


def reply_prefix(principal: str) -> str:
    """The reply-inbox prefix of a principal: an agent may subscribe only to its own."""
    return f"_INBOX.{principal}"
