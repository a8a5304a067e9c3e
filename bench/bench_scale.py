"""A hundred agents on one host: what each costs. Prints JSON.

Agents are spawned the way an operator spawns them. The manager asks the approver for each agent's spawn (in its
name, with its credential: its own sandbox is not started), and the operator approves them. The approver queues each
approved spawn on the spawner's work queue, which the spawner's own code (`hive_spawner.service.Spawner`, local
backend) follows in this process, serving its endpoints as `python -m hive_spawner` does (the turn slots and `agents`
among them). It applies one command at a time: the agent's agent.nix frozen and evaluated, its credential minted, its
sandbox started with the real harness. The broker (`python -m hive_broker`) wakes each with its "you were started"
message, and the real claude CLI runs that turn against a scripted Messages API on loopback, taking the host's turn
slots (`HIVE_TURN_SLOTS`). The approver and a dashboard run as their own processes on an embedded PostgreSQL, as
`hivectl up` runs them.

Each agent's repos are made before any timer starts, as a manager's draft is, and the manager's commit lets the
agent write to the next one (`a<i>` to `a<i+1>`, the last to `a0`); its spawn command freezes that commit. (So the
storm no longer includes making the repos, ~20 ms of git an agent.) Measured, in this order:
- agents alone (`solo`: five, one after another): from the operator's approval to the spawn applied
  (`approval_applied`), to its harness's first `turn_state` (ready), and to the end of its wake-up turn (its
  `TurnStats`); and from its sandbox process's start (the kernel's clock) to ready, next to a process that only
  imports the harness, in the same run;
- the storm: `--agents` more spawns approved at once; from the approvals to each spawn applied, to each agent's
  first `turn_state`, p50/p99, and until all are; until every agent's wake-up turn has ended;
- the host services during the storm (and the burst): the broker's `depths`, the approver's pending `approvals`
  and the spawner's `agents` (served by this process, which also runs the spawns), each asked every 50 ms, next to
  the same before the storm; what was not answered is counted;
- the dashboard's event path under that load: one logged-in SSE client of `/events`. For every HIVE_EVENTS event
  the feed forwards (all but `turn`), the delay from an ordered JetStream consumer of the stream (the kind the feed
  itself has) to the SSE client, matched by stream sequence. Both are stamped in this process, whose event loop
  also runs the spawner, so both wait for it alike;
- idle: memory of every harness and of the host services (broker, approver, dashboard, nats-server), and the CPU
  they use over `--idle-seconds` (heartbeats and long polls included), as a share of one core;
- the burst: the operator writes to every agent at once, "send to <the next agent>". The scripted model calls the
  hive's `send` tool once, and the recipient's next turn reads the message. Measured from the operator's sends to
  the end of each recipient's turn that read it, p50/p99, and until all have ended.

Memory, honestly per agent. A harness's VmRSS counts the file-backed pages every harness shares from the page
cache (the python binary, pydantic_core's .so, libcrypto), so a hundred RSS count them a hundred times. So also
each harness's PSS (shared pages divided among the processes that map them), USS (its private pages) and anonymous
memory (from smaps_rollup); the RSS of the bwrap processes around the harnesses; and the host's used memory
(MemTotal - MemAvailable) before the storm and at idle, the difference divided by the agents: what one more agent
costs the host. Other processes on the host move that figure too, so the growth of AnonPages is given beside it.
Processes are this run's own (descendants of this process), never another hive's on the same host.
    uv run python bench/bench_scale.py [--agents 100] [--idle-seconds 30] [--out FILE]   (as root: own uids)
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import httpx2 as httpx
from benchhive import BenchFailed, EventStream, arguments, bench_hive, run, summary
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from pydantic import BaseModel

from hive_dashboard.live import wanted
from hive_spawner import __version__ as spawner_version
from hive_spawner.repos import ConfigRepos, run_git
from hive_spawner.service import Spawner
from hive_spawner.settings import SpawnerSettings
from hivectl.postgres import Postgres
from hivectl.up import prepare_database
from hivetest.claude import CLAUDE, SCRIPTED_ENV
from hivetest.messages_api import Reply, Text, ToolUse, serve_messages_api
from hyperhive import bus, runtime, streams
from hyperhive.process import free_port
from hyperhive.wire import subjects
from hyperhive.wire.errors import HiveError
from hyperhive.wire.models import (
    AgentsReply,
    Approval,
    ApprovalRequest,
    ApprovalsReply,
    ApprovalsRequest,
    DecisionRequest,
    DepthsReply,
    Empty,
    OperatorSendRequest,
    SendReply,
)
from hyperhive.wire.names import MANAGER, OPERATOR

TICKS = os.sysconf("SC_CLK_TCK")
SOLOS = [f"solo{i}" for i in range(5)]  # spawned one at a time before the storm
SEND = "mcp__hyperhive__send"  # the hive's send tool, as the CLI names it
ASKED = re.compile(r"From operator:\nPlease send to ([a-z0-9-]+)\.")
TEMPLATE_RECIPIENTS = 'allowedRecipients = [ "manager" ];'
SERVICES: dict[str, tuple[str, BaseModel, type[BaseModel]]] = {
    "broker_depths_latency": (subjects.operator(subjects.BROKER, "depths"), Empty(), DepthsReply),
    "approver_approvals_latency": (
        subjects.operator(subjects.APPROVER, "approvals"),
        ApprovalsRequest(status="pending"),
        ApprovalsReply,
    ),
    "spawner_agents_latency": (subjects.operator(subjects.SPAWNER, "agents"), Empty(), AgentsReply),
}
Phases = dict[str, tuple[list[float], list[str]]]  # per service: answered latencies, and why the others were not


def stat_of(pid: int | str) -> list[str]:
    """/proc/<pid>/stat's fields after the command name (which may hold spaces): [0] is the state, [1] the parent,
    [11] and [12] the user and system ticks, [19] the start in ticks since boot. OSError once the process ended."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def descendants() -> set[int]:
    """This process's descendants: the hive's services and sandboxes are, another hive's on the host (a test suite
    alongside) are not."""
    children: dict[int, list[int]] = defaultdict(list)
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                children[int(stat_of(proc.name)[1])].append(int(proc.name))
            except OSError:
                continue  # ended meanwhile
    found, todo = set(), [os.getpid()]
    while todo:
        found.update(kids := children.get(todo.pop(), []))
        todo += kids
    return found


def processes(wanted: Callable[[list[bytes]], bool], among: set[int] | None = None) -> list[int]:
    """The pids (of `among`, else of all) whose command line (its arguments) is `wanted`."""
    found = []
    for pid in among if among is not None else (int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and wanted(argv):
            found.append(pid)
    return found


def is_harness(argv: list[bytes]) -> bool:
    """`python -I -m hive_harness` itself, not the bwrap processes around it (whose arguments hold it too)."""
    return not argv[0].endswith(b"bwrap") and argv[1:4] == [b"-I", b"-m", b"hive_harness"]


def is_bwrap(argv: list[bytes]) -> bool:
    """A bwrap process around a harness."""
    return argv[0].endswith(b"bwrap") and b"hive_harness" in argv


def rss_mib(pid: int) -> float:
    """VmRSS; 0 for a process that has ended."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    return next((int(line.split()[1]) / 1024 for line in lines if line.startswith("VmRSS:")), 0.0)


def rollup_mib(pid: int) -> dict[str, float] | None:
    """A process's memory from /proc/<pid>/smaps_rollup: PSS, USS (Private_Clean + Private_Dirty) and Anonymous;
    None for a process that has ended."""
    try:
        lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]  # the first names the range
    except OSError:
        return None
    kib = {}
    for line in lines:
        name, _, value = line.partition(":")
        kib[name] = int(value.split()[0])
    return {
        "pss": kib["Pss"] / 1024,
        "uss": (kib["Private_Clean"] + kib["Private_Dirty"]) / 1024,
        "anonymous": kib["Anonymous"] / 1024,
    }


def meminfo_mib() -> dict[str, float]:
    """/proc/meminfo in MiB."""
    lines = Path("/proc/meminfo").read_text().splitlines()
    return {k: int(v.split()[0]) / 1024 for k, v in (line.split(":", 1) for line in lines)}


def host_memory(before: dict[str, float], idle: dict[str, float], agents: int) -> dict[str, float]:
    """The host's used memory (MemTotal - MemAvailable: what it could not reclaim) before the storm and at idle, and
    the difference per agent; and the growth of AnonPages per agent, which leaves out what the kernel moves on its
    own (free page reporting in a VM, for one) but counts other processes' heaps just the same."""
    used = [m["MemTotal"] - m["MemAvailable"] for m in (before, idle)]
    return {
        "used_before_storm": round(used[0], 1),
        "used_idle": round(used[1], 1),
        "used_per_agent": round((used[1] - used[0]) / agents, 1),
        "anon_pages_per_agent": round((idle["AnonPages"] - before["AnonPages"]) / agents, 1),
    }


def mean_of(values: list[float]) -> float:
    return round(sum(values) / len(values), 1)


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            fields = stat_of(pid)
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / TICKS


class Model:
    """The scripted model. Asked by the operator to send to an agent, it calls the hive's send tool once; after a
    tool's result, and to anything else (a wake-up, a peer's message), it answers a short text. Refused sends are
    kept, so the bench fails with the reason instead of waiting for a message that never went."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    def __call__(self, body: dict[str, Any]) -> Reply:
        users = [m for m in body.get("messages") or [] if m.get("role") == "user"]
        content = users[-1].get("content") if users else ""
        blocks = content if isinstance(content, list) else [{"type": "text", "text": content}]
        results = [b for b in blocks if isinstance(b, dict) and b.get("type") == "tool_result"]
        if results:
            self.refused += [json.dumps(b.get("content"))[:300] for b in results if b.get("is_error")]
            return [Text("Sent.")]
        text = "\n".join(str(b.get("text", "")) for b in blocks if isinstance(b, dict))
        if asked := ASKED.search(text):
            return [ToolUse(SEND, {"to": asked[1], "body": "A message of the burst."})]
        return [Text("Noted.")]


def prepare(spawner: Spawner, name: str, recipient: str) -> None:
    """`name`'s repos as a manager's draft makes them (`ConfigRepos.create`), and the manager's commit of agent.nix
    letting it write to `recipient` too; then the proposed repo is the manager's, as the spawner hands it over."""
    spawner.repos.create(name)
    proposed = spawner.repos.proposed(name)
    nix = proposed / "agent.nix"
    text = nix.read_text()
    if TEMPLATE_RECIPIENTS not in text:
        raise BenchFailed(f"the template's agent.nix no longer says {TEMPLATE_RECIPIENTS!r}")
    nix.write_text(text.replace(TEMPLATE_RECIPIENTS, f'allowedRecipients = [ "manager" "{recipient}" ];'))
    run_git(proposed, "commit", "-q", "-am", f"{name} may write to {recipient}")
    spawner.backend.grant_manager(proposed)


class Watch:
    """What the harnesses say on NATS, stamped as it arrives: each agent's first `turn_state` (its harness is up),
    each turn's `TurnStats` (when, and whom it read messages from), and each crash with the agent's last lines."""

    def __init__(self, spawner: Spawner) -> None:
        self.spawner = spawner
        self.ready: dict[str, float] = {}
        self.applied: dict[str, float] = {}  # when the spawner reported an agent's spawn applied (approval_applied)
        self.turns: dict[str, list[tuple[float, dict[str, int]]]] = defaultdict(list)
        self.crashed: dict[str, list[str]] = {}
        self.changed = asyncio.Condition()

    async def subscribe(self, nc: Client) -> None:
        await nc.subscribe(subjects.agent_any("event.turn_state"), cb=self._state)
        await nc.subscribe(subjects.agent_any(subjects.STATS), cb=self._stats)
        await nc.subscribe(f"{subjects.EVENTS_PREFIX}.container_crash.*", cb=self._crash)
        await nc.subscribe(f"{subjects.EVENTS_PREFIX}.approval_applied.*", cb=self._applied)
        await nc.flush()

    async def _state(self, msg: Msg) -> None:
        async with self.changed:
            self.ready.setdefault(subjects.caller(msg.subject), time.perf_counter())
            self.changed.notify_all()

    async def _applied(self, msg: Msg) -> None:
        async with self.changed:
            self.applied.setdefault(msg.subject.rsplit(".", 1)[-1], time.perf_counter())
            self.changed.notify_all()

    async def _stats(self, msg: Msg) -> None:
        stats = json.loads(msg.data)
        if stats.get("kind") != "hive.turn.stats.v1":  # a notes compaction
            return
        async with self.changed:
            self.turns[subjects.caller(msg.subject)].append((time.perf_counter(), stats.get("received") or {}))
            self.changed.notify_all()

    async def _crash(self, msg: Msg) -> None:
        name = msg.subject.rsplit(".", 1)[-1]
        async with self.changed:
            self.crashed[name] = self.spawner.backend.journal(name, 8)
            print(f"{name} crashed:", *self.crashed[name], sep="\n  ", file=sys.stderr)
            self.changed.notify_all()

    def woke(self, name: str) -> float | None:
        """When `name`'s wake-up turn (its first) ended."""
        return self.turns[name][0][0] if self.turns.get(name) else None

    def read_peer(self, name: str, after: float) -> float | None:
        """When the first turn of `name`'s that read another agent's message, and ended after `after`, ended."""
        return next((t for t, received in self.turns.get(name, []) if t > after and received.get("peer")), None)

    async def until(
        self, names: list[str], seen: Callable[[str], object], timeout: float, what: str, *, unless: Sequence[str] = ()
    ) -> None:
        """Until each of `names` is `seen` or crashed, or something is in `unless` (a reason to stop waiting);
        BenchFailed with how many were, after `timeout`."""
        done = lambda: bool(unless) or all(n in self.crashed or seen(n) is not None for n in names)  # noqa: E731
        async with self.changed:
            try:
                await asyncio.wait_for(self.changed.wait_for(done), timeout)
            except TimeoutError:
                count = sum(seen(n) is not None for n in names)
                raise BenchFailed(f"{count} of {len(names)} agents {what} within {timeout:g}s") from None


async def operator_latencies(  # noqa: PLR0917 - one request's parts
    nc: Client,
    subject: str,
    request: BaseModel,
    reply: type[BaseModel],
    stop: asyncio.Event,
    out: list[float],
    failed: list[str],
) -> None:
    """One operator request, asked every 50 ms (a timer: this samples, it waits for nothing) until `stop`; what
    could not be answered is counted, not fatal."""
    while not stop.is_set():
        t = time.perf_counter()
        try:
            await bus.call(nc, subject, request, reply, 30)
        except HiveError as exc:
            failed.append(exc.message)
        else:
            out.append(time.perf_counter() - t)
        await asyncio.sleep(0.05)


@asynccontextmanager
async def sampled(nc: Client) -> AsyncIterator[Phases]:
    """Every host service's operator request (`SERVICES`), each asked every 50 ms for as long as the block runs."""
    stop = asyncio.Event()
    phase: Phases = {name: ([], []) for name in SERVICES}
    tasks = [asyncio.create_task(operator_latencies(nc, *SERVICES[n], stop, *phase[n])) for n in SERVICES]
    try:
        yield phase
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def latencies(service: str, phases: dict[str, Phases]) -> dict[str, object]:
    """One service's figures: each phase's latencies and how many of its requests were unanswered, with an example."""
    out: dict[str, object] = {}
    for phase, samples in phases.items():
        answered, failed = samples[service]
        out[phase] = summary(answered) if answered else None
        out[f"unanswered_{phase}"] = len(failed)
    out["unanswered_example"] = [e for p in ("during_storm", *phases) for e in phases[p][service][1]][:1]
    return out


class Feed:
    """The dashboard's event path: one logged-in SSE client of `/events`, and a JetStream consumer of HIVE_EVENTS in
    this process (ordered, as the dashboard's own feed is), both from sequence `after`; when each saw every event
    the feed forwards (`live.wanted`: all but `turn`), by stream sequence."""

    def __init__(self, client: httpx.AsyncClient, js: JetStreamContext, after: int) -> None:
        self.client, self.js, self.after = client, js, after
        self.raw: dict[int, float] = {}
        self.sse: EventStream | None = None

    async def open(self) -> None:
        await self.js.subscribe(
            ">",
            stream=subjects.EVENTS_STREAM,
            ordered_consumer=True,
            deliver_policy=js_api.DeliverPolicy.BY_START_SEQUENCE,
            config=js_api.ConsumerConfig(opt_start_seq=self.after + 1),
            cb=self._raw,
        )
        self.sse = EventStream(self.client, self.after)
        try:
            await asyncio.wait_for(self.sse.ready.wait(), 30)
        except TimeoutError:
            why = self.sse.task.exception() if self.sse.task.done() else "no hello within 30 s"
            raise BenchFailed(f"the dashboard's /events did not open: {why}") from None

    async def _raw(self, msg: Msg) -> None:
        at = time.perf_counter()
        event = json.loads(msg.data)
        if isinstance(event, dict) and wanted(event, None):
            self.raw[msg.metadata.sequence.stream] = at

    def _sse(self) -> EventStream:
        if self.sse is None:
            raise BenchFailed("the dashboard's /events was not opened")
        return self.sse

    async def caught_up(self, timeout: float = 30) -> None:
        """Until the SSE client has seen every event the consumer has (what it has not after `timeout` is missed)."""
        sse = self._sse()
        async with sse.changed:
            with suppress(TimeoutError):
                await asyncio.wait_for(sse.changed.wait_for(lambda: self.raw.keys() <= sse.arrived.keys()), timeout)

    def delays(self, start: float, end: float) -> dict[str, object]:
        """From the consumer to the SSE client, for the events the consumer saw between `start` and `end`."""
        arrived = self._sse().arrived
        seqs = [seq for seq, at in self.raw.items() if start <= at <= end]
        delays = [arrived[seq] - self.raw[seq] for seq in seqs if seq in arrived]
        return {"raw_consumer_to_sse_client": summary(delays) if delays else None, "missed": len(seqs) - len(delays)}

    async def close(self) -> None:
        if self.sse is not None:
            self.sse.task.cancel()
            await asyncio.gather(self.sse.task, return_exceptions=True)
        await self.client.aclose()


async def main(agents: int, idle_seconds: float) -> dict[str, object]:
    if agents < 2:
        raise BenchFailed("the burst needs two agents at least")
    with serve_messages_api() as api, bench_hive() as hive:
        model = Model()
        api.responder = model
        pg = Postgres(hive.root / "pg", port=free_port()).start()
        try:
            return await services(agents, idle_seconds, hive, api.url, model, pg)
        finally:
            pg.stop()


async def services(  # type: ignore[no-untyped-def]  # noqa: PLR0917 - one run's parts
    agents, idle_seconds, hive, api_url, model, pg
) -> dict[str, object]:
    """The hive's services as `hivectl up` runs them (the spawner in this process), around the measurement."""
    server = hive.server
    database_url = await prepare_database(pg.url(), ["approver", "dashboard"])
    claude_env = {**SCRIPTED_ENV, "ANTHROPIC_BASE_URL": api_url}
    agent_env = {"HIVE_CLAUDE": json.dumps([str(CLAUDE)]), "HIVE_CLAUDE_ENV": json.dumps(claude_env)}
    settings = SpawnerSettings(
        nats_url=server.url,
        nats_creds=server.identities.seed_path(subjects.SPAWNER),
        state_dir=hive.root / "spawner",
        nats_auth_dir=server.root,
        agent_env=agent_env,
    )
    nc = await bus.connect(settings, name="bench")
    operator = await bus.connect(
        settings.model_copy(update={"nats_creds": server.identities.seed_path(OPERATOR)}),
        name="operator",
        inbox_prefix=subjects.reply_prefix(OPERATOR),
    )
    # The manager's credential, for its spawn requests (its sandbox is not started: the bench asks in its name).
    server.identities.add_agent(MANAGER, hive.root / "manager.nk")
    await server.identities.reload(server.url)
    manager = await bus.connect(
        settings.model_copy(update={"nats_creds": hive.root / "manager.nk"}),
        name=MANAGER,
        inbox_prefix=subjects.reply_prefix(MANAGER),
    )
    js = nc.jetstream()
    await streams.declare(js)
    state, port = hive.root / "state", free_port()
    children = {
        "broker": hive.service("broker"),
        "approver": hive.service("approver", HIVE_DATABASE_URL=database_url),
        "dashboard": hive.service(
            "dashboard", HIVE_DATABASE_URL=database_url, HIVE_STATE_DIR=str(state), HIVE_DASHBOARD_PORT=str(port)
        ),
    }
    pids = {name: child.pid for name, child in children.items()}
    nats_conf = str(server.root).encode()
    [pids["nats-server"]] = processes(lambda argv: argv[0].endswith(b"nats-server") and nats_conf in b" ".join(argv))
    spawner = Spawner(nc, js, ConfigRepos(settings.state_dir / "config"), settings.state_dir / "agents", settings)
    feed = None
    try:
        endpoints = spawner.endpoints()
        async with bus.serve(
            nc, name=subjects.SPAWNER, version=spawner_version, description="bench", endpoints=endpoints
        ):
            feed = await dashboard_feed(f"http://127.0.0.1:{port}", state, js)
            work = asyncio.create_task(spawner.work())  # its work queue, as the service follows it
            try:
                return await measure(agents, idle_seconds, nc, (operator, manager), spawner, model, feed, pids)
            finally:
                await runtime.cancelled(work)
    finally:
        if feed is not None:
            await feed.close()
        spawner.backend.stop_all()
        await operator.close()
        await manager.close()
        await nc.close()


async def dashboard_feed(url: str, state: Path, js: JetStreamContext) -> Feed:
    """Log in to the dashboard with its initial password and open `/events` from the stream's last sequence."""
    password = (state / "dashboard" / "initial-password").read_text().strip()
    async with httpx.AsyncClient(base_url=url, timeout=30) as login:
        if (await login.post("/login", data={"password": password})).status_code != 303:
            raise BenchFailed("the dashboard refused its own initial password")
        cookies = dict(login.cookies)
    after = int((await js.stream_info(subjects.EVENTS_STREAM)).state.last_seq)
    feed = Feed(httpx.AsyncClient(base_url=url, cookies=cookies, timeout=None), js, after)
    await feed.open()
    return feed


def started_to(at: float, pid: int) -> float:
    """Milliseconds from the start of process `pid` (the kernel's clock, to its ticks: /proc/<pid>/stat) to `at`, a
    `perf_counter` stamp of this process."""
    ticks = int(stat_of(pid)[19])
    at_boottime = time.clock_gettime(time.CLOCK_BOOTTIME) - (time.perf_counter() - at)
    return (at_boottime - ticks / TICKS) * 1000


async def requested(manager: Client, names: list[str]) -> dict[str, int]:
    """Each agent's spawn, requested by the manager as its `request_spawn` tool does: the pending approvals' ids."""
    ids = {}
    for name in names:
        request = ApprovalRequest(agent=name, description=f"{name}, for the scale benchmark")
        where = subjects.agent(MANAGER, f"{subjects.REQUEST}.spawn")
        ids[name] = (await bus.call(manager, where, request, Approval, 30)).id
    return ids


async def approve(operator: Client, ids: list[int]) -> None:
    """The operator approves them all at once (as many dashboard clicks would); the spawner takes them from its work
    queue one at a time, as it always does."""
    decide = subjects.operator(subjects.APPROVER, "approve")
    await asyncio.gather(*(bus.call(operator, decide, DecisionRequest(id=i), Approval, 30) for i in ids))


async def solo(operator: Client, watch: Watch, spawner: Spawner, approvals: dict[str, int]) -> dict[str, object]:
    """Agents' spawns approved one at a time, each once the one before has ended its wake-up turn, through the same
    services: what a spawn costs without a storm. Each figure's median and spread over `SOLOS`."""
    applied: list[float] = []
    started: list[float] = []
    ready: list[float] = []
    woke: list[float] = []
    for name, approval in approvals.items():
        t = time.perf_counter()
        await approve(operator, [approval])
        await watch.until([name], watch.applied.get, 120, "applied alone")
        await watch.until([name], watch.ready.get, 120, "came up alone")
        await watch.until([name], watch.woke, 120, "ended a wake-up turn alone")
        if name in watch.crashed:
            raise BenchFailed(f"{name} crashed: {watch.crashed[name]}")
        sandbox = spawner.backend.sandbox(name)  # type: ignore[attr-defined]  # the local backend's
        applied.append(watch.applied[name] - t)
        started.append(started_to(watch.ready[name], sandbox.pid) / 1000)
        ready.append(watch.ready[name] - t)
        woke.append((watch.woke(name) or t) - t)
    figures = {"approve_to_applied": applied, "sandbox_start_to_harness_ready": started}
    figures |= {"approve_to_harness_ready": ready, "approve_to_wake_turn_end": woke}
    figures["harness_imports_alone"] = [await imports() for _ in approvals]
    return {"agents": len(approvals)} | {key: summary(values, (50, 100)) for key, values in figures.items()}


async def imports() -> float:
    """The baseline of a start, in the same run: a Python process that only imports the harness, on the host, from
    its start to its exit (the machine's speed moves both alike)."""
    t = time.perf_counter()
    child = await asyncio.create_subprocess_exec(sys.executable, "-I", "-c", "import hive_harness.__main__")
    if await child.wait() != 0:
        raise BenchFailed("the harness does not import")
    return time.perf_counter() - t


async def storm(operator: Client, watch: Watch, approvals: dict[str, int]) -> tuple[float, dict[str, object]]:
    """Every spawn approved at once; when that began, and the storm's and the wake-up turns' figures."""
    names = list(approvals)
    t0 = time.perf_counter()
    await approve(operator, list(approvals.values()))
    approved = time.perf_counter() - t0
    await watch.until(names, watch.applied.get, 600, "were applied")
    await watch.until(names, watch.ready.get, 600, "came up")
    await watch.until(names, watch.woke, 900, "ended their wake-up turn")
    applied = [watch.applied[n] - t0 for n in names if n in watch.applied]
    ready = [watch.ready[n] - t0 for n in names if n in watch.ready]
    woke = [at - t0 for n in names if (at := watch.woke(n)) is not None]
    return t0, {
        "storm": {
            "operator_approvals_answered_s": round(approved, 3),
            "approve_to_applied": summary(applied),
            "all_spawns_applied_s": round(max(applied), 2),
            "approve_to_harness_ready": summary(ready),
            "all_ready_s": round(max(ready), 2),
        },
        "wake_turns": {"approve_to_turn_end": summary(woke), "all_ended_s": round(max(woke), 2)},
    }


async def idle(
    pids: dict[str, int], idle_seconds: float, memory_before: dict[str, float], agents: int
) -> dict[str, object]:
    """Once every wake-up turn has ended: CPU over the idle window, then memory, per harness and for the host."""
    ours = descendants()
    harnesses = processes(is_harness, ours)
    services = list(pids.values())
    before = cpu_seconds(harnesses), cpu_seconds(services)
    await asyncio.sleep(idle_seconds)  # the idle window itself: CPU is counted over it
    after = cpu_seconds(harnesses), cpu_seconds(services)
    memory = meminfo_mib()
    rss = [rss_mib(pid) for pid in harnesses]
    rollups = [r for pid in harnesses if (r := rollup_mib(pid)) is not None]
    if not rollups:
        raise BenchFailed("no harness was running at idle")
    bwraps = [rss_mib(pid) for pid in processes(is_bwrap, ours)]
    return {
        "harness_processes": len(harnesses),
        "harness_rss_mib": {"total": round(sum(rss), 1), "per_agent_mean": mean_of(rss)},
        "harness_per_agent_mean_mib": {
            "rss": mean_of(rss),
            **{kind: mean_of([r[kind] for r in rollups]) for kind in ("pss", "uss", "anonymous")},
        },
        "bwrap_rss_mib": {
            "processes": len(bwraps),
            "total": round(sum(bwraps), 1),
            "per_agent": round(sum(bwraps) / len(harnesses), 2),
        },
        "host_memory_mib": host_memory(memory_before, memory, agents),
        "host_services": sorted(pids),
        "host_services_rss_mib": round(sum(rss_mib(pid) for pid in services), 1),
        "host_service_rss_mib": {name: round(rss_mib(pid), 1) for name, pid in sorted(pids.items())},
        "cpu_share_of_one_core": {
            "harnesses": round((after[0] - before[0]) / idle_seconds, 4),
            "host_services": round((after[1] - before[1]) / idle_seconds, 4),
        },
        "seconds": idle_seconds,
    }


async def burst(operator: Client, watch: Watch, model: Model, names: list[str]) -> tuple[float, dict[str, object]]:
    """The operator asks every agent at once to send to the next (`a<i>` to `a<i+1>`); until each recipient's turn
    that read its message has ended. Agents that crashed in the storm, and their partners, take no part."""
    pairs = [(s, r) for s, r in zip(names, names[1:] + names[:1], strict=True) if not {s, r} & watch.crashed.keys()]
    if not pairs:
        raise BenchFailed("no two agents survived the storm to exchange a message")
    t0 = time.perf_counter()
    asks = [OperatorSendRequest(to=s, body=f"Please send to {r}.") for s, r in pairs]
    await asyncio.gather(
        *(bus.call(operator, subjects.operator(subjects.BROKER, "send"), a, SendReply, 30) for a in asks)
    )
    sent = time.perf_counter() - t0
    recipients = [r for _, r in pairs]

    def read(name: str) -> float | None:
        return watch.read_peer(name, t0)

    await watch.until(recipients, read, 900, "ended a turn that read the burst's message", unless=model.refused)
    if model.refused:
        raise BenchFailed(f"{len(model.refused)} sends of the burst were refused, e.g. {model.refused[0]}")
    ended = [at - t0 for n in recipients if (at := read(n)) is not None]
    return t0, {
        "messages": len(pairs),
        "operator_sends_answered_s": round(sent, 3),
        "start_to_recipient_turn_end": summary(ended),
        "all_ended_s": round(max(ended), 2),
    }


async def measure(  # type: ignore[no-untyped-def]  # noqa: PLR0917 - one run's parts
    agents, idle_seconds, nc, clients, spawner, model, feed, pids
) -> dict[str, object]:
    operator, manager = clients
    names = [f"a{i}" for i in range(agents)]
    for name, recipient in [*((s, names[0]) for s in SOLOS), *zip(names, names[1:] + names[:1], strict=True)]:
        await asyncio.to_thread(prepare, spawner, name, recipient)
    approvals = await requested(manager, [*SOLOS, *names])
    watch = Watch(spawner)
    await watch.subscribe(nc)
    single = await solo(operator, watch, spawner, {name: approvals.pop(name) for name in SOLOS})

    phases: dict[str, Phases] = {}
    async with sampled(operator) as phases["before_storm"]:
        await asyncio.sleep(1.5)  # a window of each service's latency before the storm (~25 samples each)
    memory_before = meminfo_mib()
    async with sampled(operator) as phases["during_storm"]:
        storm_t0, storm_figures = await storm(operator, watch, approvals)
    storm_end = time.perf_counter()
    quiet = await idle(pids, idle_seconds, memory_before, agents)
    async with sampled(operator) as phases["during_burst"]:
        burst_t0, burst_figures = await burst(operator, watch, model, names)
    burst_end = time.perf_counter()
    await feed.caught_up()
    return {
        "benchmark": "scale",
        "machine": {"cpus": os.cpu_count(), "load_at_end": os.getloadavg()[0]},
        "agents": agents,
        "crashed_in_the_storm": sorted(watch.crashed),
        "turn_slots": spawner.slots.limit,
        "solo": single,
        **storm_figures,
        **{service: latencies(service, phases) for service in SERVICES},
        "dashboard_events": {
            "during_storm": feed.delays(storm_t0, storm_end),
            "during_burst": feed.delays(burst_t0, burst_end),
        },
        "idle": quiet,
        "burst": burst_figures,
        "targets": {"idle_harness_mib": 40, "start_to_ready_ms": 250, "idle_cpu_share_100_agents": 0.02},
    }


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--agents", type=int, default=100)
    parser.add_argument("--idle-seconds", type=float, default=30)
    args = parser.parse_args()
    run(main(args.agents, args.idle_seconds), args.out)
