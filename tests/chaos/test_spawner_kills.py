"""A spawner killed with SIGKILL at every step of applying a command, or of an operator's verb: the next spawner on the
same state takes the command up again (the operator asks again), and it ends where one uninterrupted run would have —
the agent running once or not at all, its repos whole, its credential and policy there or gone, the approval deployed.

Each kill is real: the spawner process stops itself (SIGSTOP) just before its k-th step and says which, and the test
kills it by its pid (SIGKILL), so what it leaves behind is what a kill leaves: half-made folders, a sandbox it started,
a token it kept, no `finally` run, and no sleep to find the moment. The steps are every
change the spawner makes outside itself: a git command that writes, a folder moved into place, a file it replaces, a
subprocess it starts, a message it publishes; a sweep goes on until a spawner gets through the whole command or verb.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.errors import KeyNotFoundError

from hive_approver.__main__ import start as start_approver
from hive_spawner.__main__ import start as start_spawner
from hive_spawner.local import sandboxes_binding
from hive_spawner.repos import ConfigRepos, git, read_head
from hive_spawner.service import Spawner
from hivectl.natsserver import NatsServer
from hivetest.agents import make_agent, operator_call
from hivetest.hive import TestHive
from hivetest.services import approver_settings, spawner_settings
from hyperhive import bus, runtime
from hyperhive.identity import public_key
from hyperhive.wire import subjects
from hyperhive.wire.errors import HiveError
from hyperhive.wire.models import (
    AgentPolicy,
    AgentRequest,
    AgentsReply,
    AgentStatus,
    Approval,
    ApprovalResolved,
    DecisionRequest,
    Empty,
    Event,
)

# The spawner as `python -m hive_spawner` runs it, but stopping itself (SIGSTOP) just before the k-th step it takes once
# it has a command or an operator's verb (argv[1] = k), after saying which step that is.
KILLER = r"""
import os, shutil, signal, sys, tempfile, threading
import nats.aio.msg, nats.js.kv
from hive_spawner import __main__ as entry, commands, dirs, lifecycle, local, repos, service
from hyperhive import bus, identity

kill_at, steps, armed = int(sys.argv[1]), [], []
WRITES = {"init", "commit", "fetch", "update-ref", "symbolic-ref"}  # git commands that change a repo

def step(owner, name, label, when=lambda *a, **kw: True):
    real = getattr(owner, name)
    def before(*args, **kwargs):
        if armed and when(*args, **kwargs):
            steps.append(label(*args, **kwargs))
            if len(steps) == kill_at:
                print("at:", steps[-1], flush=True)
                # to this thread: a process-wide SIGSTOP can leave a worker thread running a step further
                signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
        return real(*args, **kwargs)
    setattr(owner, name, before)

def arming(owner, name):
    real = getattr(owner, name)
    def arm(*args, **kwargs):
        armed.append(True)
        return real(*args, **kwargs)
    setattr(owner, name, arm)

arming(service.Spawner, "_carry_out")
arming(service.Spawner, "act")
step(repos, "run_git", lambda repo, *args, **kw: f"git {args[0]} {repo.name}", lambda repo, *a, **kw: a[0] in WRITES)
step(os, "rename", lambda src, dst: f"move {os.path.basename(dst)} into place")
step(shutil, "rmtree", lambda path, **kw: f"remove {os.path.relpath(path, os.path.dirname(os.path.dirname(path)))}",
     lambda path, **kw: os.path.exists(path) and not str(path).startswith(tempfile.gettempdir()))
step(lifecycle, "evaluate", lambda files, agent, **kw: "evaluate agent.nix")
step(dirs.AgentDirs, "hand_over_policy", lambda self, name, text: "hand the policy over")
step(dirs.Uids, "forget", lambda self, name: "forget the uid")
step(identity.Identities, "add_agent", lambda self, name, seed: "mint the credential")
step(identity.Identities, "remove_agent", lambda self, name: "revoke the credential")
step(identity.Identities, "reload", lambda self, url: "reload nats-server")
step(nats.js.kv.KeyValue, "put", lambda self, key, value, **kw: "publish the policy")
step(nats.js.kv.KeyValue, "delete", lambda self, key, **kw: "delete the policy")
step(service.Spawner, "_mark", lambda self, agent, desired: f"mark {desired}")
step(local.LocalBackend, "start", lambda self, name, command, env: "start the sandbox")
step(local.LocalBackend, "stop", lambda self, name: "stop the sandbox")
step(service.Spawner, "_event", lambda self, type_, agent, data: f"event {type_}")
step(bus, "call", lambda nc, subject, *a, **kw: "report the outcome")
step(nats.aio.msg.Msg, "ack_sync", lambda self, **kw: "acknowledge the command")
serve = entry.start
async def start(*args):
    spawner = await serve(*args)
    print("serving", flush=True)
    return spawner
entry.start = start
entry.main()
"""


@dataclass
class Sweep:
    """What each kill left, once the next spawner had taken the work up again."""

    what: str
    steps: list[str] = field(default_factory=list)
    converged: int = 0
    failed: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)

    def record(self, problems: list[str], sandboxes: int) -> None:
        if sandboxes > 1:
            self.twice.append(f"{self.steps[-1]}: {sandboxes} sandboxes")
        if problems:
            self.failed.append(f"{self.steps[-1]}: {'; '.join(problems)}")
        else:
            self.converged += 1

    def figures(self) -> str:
        return (
            f"{self.what}: {len(self.steps)} steps, {self.converged} converged, {len(self.failed)} failed, "
            f"{len(self.twice)} running twice"
        )


def sandboxes(state: Path) -> int:
    """How many sandboxes bind `state` at /state: bwrap processes (each sandbox is two, the second a fork of the
    first) whose parent is not one of them."""
    found = {}
    for pid in sandboxes_binding([state]):
        with contextlib.suppress(OSError):
            found[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    return sum(1 for ppid in found.values() if ppid not in found)


async def killed(hive: TestHive, state: Path, kill_at: int, work: Callable[[], Awaitable[object]]) -> str | None:
    """Run a spawner on `state`, give it `work` once it serves, and kill it (SIGKILL, by its pid) when it stands
    before its step `kill_at`; return that step, or None when the work was done first (it got through it whole, and
    is stopped)."""
    settings = spawner_settings(hive, state)
    env = {
        **os.environ,
        "HIVE_NATS_URL": settings.nats_url,
        "HIVE_NATS_CREDS": str(settings.nats_creds),
        "HIVE_STATE_DIR": str(state),
        "HIVE_NATS_AUTH_DIR": str(settings.nats_auth_dir),
        "HIVE_AGENT_COMMAND": json.dumps(settings.agent_command),
    }
    argv = [sys.executable, "-c", KILLER, str(kill_at)]
    proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE, env=env)
    try:
        assert proc.stdout is not None
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"serving\n"
        said, done = asyncio.ensure_future(proc.stdout.readline()), asyncio.ensure_future(work())
        await asyncio.wait({said, done}, timeout=60, return_when=asyncio.FIRST_COMPLETED)
        if done.done():
            await runtime.cancelled(said)
            proc.terminate()
            done.result()
            return None
        await runtime.cancelled(done)
        try:
            line = (await asyncio.wait_for(said, 60)).decode().strip()
        except TimeoutError:
            raise AssertionError(f"the spawner neither did the work nor reached its step {kill_at}") from None
        assert line.startswith("at:"), line
        proc.kill()  # kill -9, where it stands
        assert await proc.wait() == -signal.SIGKILL
        return line.removeprefix("at:").strip()
    finally:
        if proc.returncode is None:  # a test that failed meanwhile leaves no spawner behind
            proc.kill()
        await proc.wait()


async def test_a_spawn_killed_at_any_step_ends_right_when_the_next_spawner_takes_it_up(
    hive: TestHive, database_url: str, operator_nc: Client, spawner_state: Path
) -> None:
    sweep = Sweep("spawner kills")
    async with AsyncExitStack() as stack:
        approver = await start_approver(stack, approver_settings(hive, database_url))
        manager = await make_agent(hive, approver, "manager")
        applied = await (await hive.connect("dashboard")).subscribe(f"{subjects.EVENTS_PREFIX}.approval_applied.>")
        acks = await acknowledged(hive)
        for kill_at in itertools.count(1):
            agent, state = f"b{kill_at}", spawner_state / f"k{kill_at}"
            state.mkdir(mode=0o711)
            pending = await manager.request("spawn", agent=agent, description="a helper")
            await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
            step = await killed(hive, state, kill_at, acks.get)
            if step is None:
                break
            sweep.steps.append(step)

            async with the_next_spawner(hive, state, acks, applied, pending.id) as (spawner, outcome):
                problems = await _spawned_wrong(hive, spawner.repos, state / "agents", agent, pending.id)
                if outcome.status != "deployed":
                    problems.append(f"approval {outcome.status}: {outcome.note}")
                running = sandboxes(state / "agents" / agent)
            sweep.record(problems, running)
    print(sweep.figures())
    assert (sweep.failed, sweep.twice) == ([], []), sweep.figures()
    assert len(sweep.steps) >= 15, sweep.steps  # every kind of step was reached


async def test_a_config_change_killed_at_any_step_ends_right_when_the_next_spawner_takes_it_up(
    hive: TestHive, database_url: str, operator_nc: Client, spawner_state: Path
) -> None:
    sweep = Sweep("spawner apply_commit kills")
    state = spawner_state / "hive"
    state.mkdir(mode=0o711)
    agents, proposed = state / "agents", state / "config" / "proposed" / "alice"
    async with AsyncExitStack() as stack:
        approver = await start_approver(stack, approver_settings(hive, database_url))
        manager = await make_agent(hive, approver, "manager")
        applied = await (await hive.connect("dashboard")).subscribe(f"{subjects.EVENTS_PREFIX}.approval_applied.>")
        acks = await acknowledged(hive)
        async with AsyncExitStack() as first:
            await start_spawner(first, spawner_settings(hive, state))
            pending = await manager.request("spawn", agent="alice")
            await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
            await asyncio.wait_for(acks.get(), 60)
        for kill_at in itertools.count(1):
            model = f"model-{kill_at}"
            (proposed / "agent.nix").write_text(f'{{...}}: {{ hyperhive.model = "{model}"; }}\n')
            as_the_manager(proposed, "commit", "-q", "-am", model)
            async with AsyncExitStack() as freezing:  # a spawner freezes the commit when the manager asks
                await start_spawner(freezing, spawner_settings(hive, state))
                pending = await manager.request(
                    "apply_commit", agent="alice", commit_ref=as_the_manager(proposed, "rev-parse", "HEAD")
                )
            await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
            step = await killed(hive, state, kill_at, acks.get)
            if step is None:
                break
            sweep.steps.append(step)

            async with the_next_spawner(hive, state, acks, applied, pending.id) as (spawner, outcome):
                problems = [] if outcome.status == "deployed" else [f"approval {outcome.status}: {outcome.note}"]
                if read_head(spawner.repos.applied("alice")) != pending.frozen_sha:
                    problems.append("not the frozen commit applied")
                kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
                published = AgentPolicy.model_validate_json((await kv.get("alice")).value or b"")
                handed = AgentPolicy.model_validate_json((agents / ".policy" / "alice" / "policy.json").read_text())
                if (published.model, handed.model) != (model, model):
                    problems.append(f"policy published {published.model}, handed over {handed.model}")
                running = sandboxes(agents / "alice")
                if running != 1:
                    problems.append(f"{running} sandboxes")
            sweep.record(problems, running)
    print(sweep.figures())
    assert (sweep.failed, sweep.twice) == ([], []), sweep.figures()
    assert len(sweep.steps) >= 8, sweep.steps


def as_the_manager(repo: Path, *args: str) -> str:
    """git as the manager runs it in a proposed repo, which it owns."""
    argv = [
        "git",
        "-c",
        "safe.directory=*",
        "-c",
        "user.name=manager",
        "-c",
        "user.email=manager@hive.invalid",
        "-C",
        str(repo),
        *args,
    ]
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()


async def test_an_operator_verb_killed_at_any_step_ends_right_when_asked_again(
    hive: TestHive, database_url: str, operator_nc: Client, spawner_state: Path
) -> None:
    sweep = Sweep("spawner verb kills")
    state = spawner_state / "hive"
    state.mkdir(mode=0o711)
    agents = state / "agents"
    async with AsyncExitStack() as stack:
        approver = await start_approver(stack, approver_settings(hive, database_url))
        manager = await make_agent(hive, approver, "manager")
        acks = await acknowledged(hive)

        async def spawn_bob() -> None:
            pending = await manager.request("spawn", agent="bob")
            await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
            await asyncio.wait_for(acks.get(), 60)

        async def ask(verb: str) -> None:
            await bus.call(
                operator_nc,
                subjects.operator(subjects.SPAWNER, verb),
                AgentRequest(agent="bob"),
                AgentStatus,
                timeout=30,
            )

        async def sweep_verb(verb: str, after: str | None, back: Callable[[], Awaitable[None]] | None) -> None:
            """Kill `verb` at each of its steps in turn, ask again of the next spawner, and take bob `back` to where
            the verb found him for the next kill."""
            for kill_at in itertools.count(1):
                step = await killed(hive, state, kill_at, lambda: ask(verb))
                if step is None:
                    return
                sweep.steps.append(f"{verb}: {step}")
                async with AsyncExitStack() as next_one:
                    await start_spawner(next_one, spawner_settings(hive, state))
                    try:
                        await ask(verb)
                        problems = await _left_wrong(hive, operator_nc, agents, after)
                    except HiveError as exc:
                        problems = [f"asked again, {exc.code}: {exc.message}"]
                    running = sandboxes(agents / "bob")
                    if back is not None:
                        await back()
                sweep.record(problems, running)

        async def in_a_spawner(work: Callable[[], Awaitable[None]]) -> None:
            async with AsyncExitStack() as plain:
                await start_spawner(plain, spawner_settings(hive, state))
                await work()

        async def back_to_a_tombstone() -> None:
            await spawn_bob()
            await ask("destroy")

        await in_a_spawner(spawn_bob)
        await sweep_verb("stop", "stopped", lambda: ask("start"))
        await sweep_verb("start", "running", lambda: ask("stop"))
        await sweep_verb("restart", "running", None)
        await sweep_verb("destroy", "destroyed", lambda: ask("revive"))
        await sweep_verb("revive", "running", lambda: ask("destroy"))
        await in_a_spawner(lambda: ask("destroy"))
        await sweep_verb("purge", None, back_to_a_tombstone)
    print(sweep.figures())
    assert (sweep.failed, sweep.twice) == ([], []), sweep.figures()
    assert len(sweep.steps) >= 30, sweep.steps  # every verb got past its first step


async def acknowledged(hive: TestHive) -> asyncio.Queue[None]:
    """One item for each spawner command acknowledged (watched on the acks' own subjects)."""
    acks: asyncio.Queue[None] = asyncio.Queue()

    async def ack(msg: Msg) -> None:
        if msg.data in (b"", b"+ACK"):  # nats-py acks with an empty body
            acks.put_nowait(None)

    await (await hive.connect(subjects.SPAWNER)).subscribe(
        f"$JS.ACK.{subjects.SPAWNER_CMD_STREAM}.spawner-local.>", cb=ack
    )
    return acks


@asynccontextmanager
async def the_next_spawner(
    hive: TestHive, state: Path, acks: asyncio.Queue[None], applied: Subscription, approval_id: int
) -> AsyncIterator[tuple[Spawner, ApprovalResolved]]:
    """The next spawner on the same state: the command comes at once, and is applied once more; with its outcome."""
    async with AsyncExitStack() as next_one:
        spawner = await start_spawner(next_one, spawner_settings(hive, state))
        await asyncio.wait_for(acks.get(), 60)
        yield spawner, await _outcome(applied, approval_id)


async def _outcome(applied: Subscription, approval_id: int) -> ApprovalResolved:
    """The approval_applied event of `approval_id` (one run reported it; a kill may have come after the report)."""
    while True:
        event = Event.model_validate_json((await applied.next_msg(timeout=30)).data)
        resolved = ApprovalResolved.model_validate(event.data)
        if resolved.id == approval_id:
            return resolved


async def _spawned_wrong(hive: TestHive, repos: ConfigRepos, agents: Path, agent: str, approval_id: int) -> list[str]:
    """What is not as one uninterrupted spawn leaves it."""
    problems = []
    running = sandboxes(agents / agent)
    if running != 1:
        problems.append(f"{running} sandboxes")
    leftovers = [p.name for p in repos.root.iterdir() if p.name.startswith(".new-")]
    if leftovers:
        problems.append(f"scratch folders left: {leftovers}")
    try:
        head = read_head(repos.proposed(agent))
    except HiveError as exc:
        head = exc.message
    applied = git(repos.applied(agent), "rev-parse", "--verify", "--quiet", "HEAD", check=False)
    frozen = git(repos.applied(agent), "rev-parse", "--verify", "--quiet", f"proposal/{approval_id}", check=False)
    if not head == applied == frozen:
        problems.append(f"proposed {head[:8]}, applied {applied[:8]}, frozen {frozen[:8]}")
    policy = agents / ".policy" / agent / "policy.json"
    if not policy.exists() or stat.S_IMODE(policy.stat().st_mode) != 0o640:
        problems.append("no policy handed over, mode 0640")
    return problems + await _admitted_wrong(hive, agents, agent, "running")


async def _left_wrong(hive: TestHive, operator_nc: Client, agents: Path, after: str | None) -> list[str]:
    """What is not as one uninterrupted verb leaves bob: `after` (running, stopped, destroyed), or gone."""
    reply = await bus.call(operator_nc, subjects.operator(subjects.SPAWNER, "agents"), Empty(), AgentsReply)
    listed = {a.name: a.state for a in reply.agents}
    problems = [] if listed.get("bob") == after else [f"listed as {listed.get('bob')}"]
    if after is None:  # purged: nothing of bob's is left
        config = agents.parent / "config"
        left = [p for p in (agents / "bob", config / "proposed" / "bob", config / "applied" / "bob") if p.exists()]
        if left or "bob" in json.loads((agents / ".uids.json").read_text()):
            problems.append(f"left: {[str(p) for p in left]} and maybe its uid")
        return problems
    running = sandboxes(agents / "bob")
    if running != (after == "running"):
        problems.append(f"{running} sandboxes")
    return problems + await _admitted_wrong(hive, agents, "bob", after)


async def _admitted_wrong(hive: TestHive, agents: Path, agent: str, state: str) -> list[str]:
    """Whether `agent`'s credential, policy and mark are what `state` calls for: all there but when destroyed."""
    assert isinstance(hive.server, NatsServer)
    problems = []
    kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
    try:
        AgentPolicy.model_validate_json((await kv.get(agent)).value or b"")
        published = True
    except KeyNotFoundError:
        published = False
    pub, seed = hive.server.root / "agents" / f"{agent}.pub", agents / agent / "nats.nk"
    authorized = pub.exists() and seed.exists() and pub.read_text().strip() == public_key(seed)
    if (published, authorized) != (state != "destroyed",) * 2:
        problems.append(f"policy published: {published}, credential authorized: {authorized}")
    marks = agents / ".desired.json"
    marked = json.loads(marks.read_text()).get(agent) if marks.exists() else None
    if marked != state:
        problems.append(f"marked {marked}")
    return problems
