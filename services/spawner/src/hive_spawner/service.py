"""The spawner's wiring: freezing commits for the approver, and applying approved commands from its work queue.

A command is acknowledged only after its outcome is reported, so a spawner that dies mid-way gets it again; every
step is idempotent (the same frozen commit, the same policy, repos built aside and moved in whole, an agent running
already is started, not a conflict), and an outcome the approver already has is not an error. git, file work and the
backend run in threads, so no request waits behind another's `create`; one agent changes one step at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import shutil
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js import api as js_api
from pydantic import BaseModel

from hive_spawner.evaluate import evaluate
from hive_spawner.local import LocalBackend
from hive_spawner.nixos import NixosBackend
from hive_spawner.repos import ConfigRepos, git, proposal_tag
from hive_spawner.settings import SpawnerSettings
from hive_spawner.uids import POLICY_FILE, POLICY_IN_SANDBOX, Uids
from hyperhive import bus
from hyperhive.files import read_untrusted, write_atomic
from hyperhive.identity import Identities
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    AgentConfigReply,
    AgentDestroyed,
    AgentPolicy,
    AgentRequest,
    AgentsReply,
    AgentStarted,
    AgentState,
    AgentStateChanged,
    AgentStatus,
    AgentTransient,
    Approval,
    ContainerCrash,
    Empty,
    Event,
    FreezeReply,
    FreezeRequest,
    LifecycleRefused,
    LogsReply,
    LogsRequest,
    OutcomeRequest,
    SpawnerCommand,
    Transient,
)
from hyperhive.wire.names import MANAGER, check_agent_name, check_agent_ref

log = logging.getLogger("hive_spawner")

MANAGER_VERBS = ("start", "stop", "restart")
IN_FLIGHT = ".in-flight-command"  # the delivery token of the command being applied
BOOTSTRAP = 0  # the approval id of the manager's creation at a hive's first start (approvals count from 1)


class Backend(Protocol):
    """What the spawner needs of a container backend (local: bubblewrap; nixos: nixos-container)."""

    uids: Uids

    def state_dir(self, name: str) -> Path: ...
    def uid(self, name: str) -> int: ...
    def prepare(self, name: str) -> Path: ...
    def start(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> None: ...
    def stop(self, name: str) -> None: ...
    def stop_all(self) -> None: ...
    def running(self, *names: str) -> set[str]: ...
    def journal(self, name: str, lines: int) -> list[str]: ...
    def destroy(self, name: str) -> None: ...
    def grant_manager(self, repo: Path) -> None: ...
    def hand_over_policy(self, name: str, text: str) -> None: ...
    def reap_orphans(self) -> list[str]: ...


OPERATOR_VERBS = (*MANAGER_VERBS, "destroy", "revive", "purge")
TRANSIENTS: dict[str, Transient] = {
    "start": "starting",
    "stop": "stopping",
    "restart": "restarting",
    "destroy": "destroying",
    "revive": "reviving",
}


class Spawner:
    def __init__(
        self,
        nc: Client,
        js: JetStreamContext,
        repos: ConfigRepos,
        state_root: Path,
        settings: SpawnerSettings,
    ) -> None:
        self._nc = nc
        self._js = js
        self.repos = repos
        self.state_root = state_root
        self.host = settings.host
        self.settings = settings
        self._loop = asyncio.get_running_loop()
        self.backend: Backend
        if settings.backend == "nixos":
            self.backend = NixosBackend(
                state_root,
                repos,
                containers_root=settings.containers_dir or settings.state_dir / "containers",
                conf_dir=settings.nixos_conf_dir,
                cpu_quota=settings.cpu_quota,
                memory_max=settings.memory_max,
                on_exit=self._exited_in_thread,
            )
        else:
            self.backend = LocalBackend(
                state_root, on_exit=self._exited_in_thread, proposed_root=repos.root / "proposed"
            )
        self._crashed: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)  # one change of an agent at a time
        self._auth = asyncio.Lock()  # auth.conf is rendered whole from the registry: one change, then its reload
        self._marks_lock = threading.Lock()
        for lock in self.repos.clear_stale_locks():
            log.warning("lock=%s outcome=stale_git_lock_removed", lock)

    async def freeze(self, subject: str, req: FreezeRequest) -> FreezeReply:
        # git runs in a thread: the event loop keeps serving while it works.
        frozen = await asyncio.to_thread(self.repos.freeze, req.agent, req.commit_ref, req.approval_id)
        log.info("agent=%s approval=%d sha=%s outcome=frozen", req.agent, req.approval_id, frozen.sha[:12])
        return FreezeReply(sha=frozen.sha, tag=frozen.tag, diff=frozen.diff)

    async def apply(self, command: SpawnerCommand) -> None:
        """Carry out one approved command. Run again after a kill at any step, it ends where one run would have."""
        async with self._busy[command.agent]:
            await self._transient(command.agent, "rebuilding" if command.action == "apply_commit" else "spawning")
            if command.action == "apply_commit":
                if command.tag is None or command.sha is None:
                    raise HiveError(ErrorCode.INVALID_REQUEST, f"Approval #{command.approval_id} has no frozen commit.")
                policy = await asyncio.to_thread(self._evaluate_and_apply, command.agent, command.tag, command.sha)
                await self._publish_policy(command.agent, policy)
            elif command.action == "spawn_draft":
                await asyncio.to_thread(self._draft, command.agent)
            else:  # spawn (from the template as it is) or spawn_commit (from a reviewed, frozen commit)
                await self._spawn(command)
            await self._state_changed(command.agent)

    async def _spawn(self, command: SpawnerCommand) -> None:
        """spawn (from the template as it is) or spawn_commit (from a reviewed, frozen commit)."""
        if command.action == "spawn":
            tag, sha = await asyncio.to_thread(self._draft_frozen, command.agent, command.approval_id)
        elif command.tag is None or command.sha is None:
            raise HiveError(ErrorCode.INVALID_REQUEST, f"Approval #{command.approval_id} has no frozen commit.")
        else:
            tag, sha = command.tag, command.sha
        policy = await asyncio.to_thread(self._evaluate_and_apply, command.agent, tag, sha)
        await self._admit(command.agent)
        await self._publish_policy(command.agent, policy)
        await self.start_agent(command.agent, restarted=False)

    def _draft_frozen(self, agent: str, approval_id: int) -> tuple[str, str]:
        """spawn: the new agent's repos, and its template commit frozen for this approval — or what an earlier run
        of the command froze (the manager may have committed since: the approval was for the template)."""
        self._draft(agent, bootstrap=approval_id == BOOTSTRAP)
        tag = proposal_tag(approval_id)
        sha = self.repos.tagged(agent, tag) or self.repos.freeze(agent, self.repos.head(agent), approval_id).sha
        return tag, sha

    def _evaluate_and_apply(self, agent: str, tag: str, sha: str) -> AgentPolicy:
        """Evaluate the frozen commit first; only a commit that evaluates and validates is applied."""
        with self.repos.checkout(agent, tag, sha) as files:
            policy = evaluate(files, agent)
        self.repos.apply(agent, tag, sha)
        self._hand_over(agent, policy)
        return policy

    def _evaluate_applied(self, agent: str) -> AgentPolicy:
        """revive: the applied commit evaluated again, and its policy handed over."""
        with self.repos.checkout_applied(agent) as files:
            policy = evaluate(files, agent)
        self._hand_over(agent, policy)
        return policy

    def _hand_over(self, agent: str, policy: AgentPolicy) -> None:
        """The harness reads its policy from a read-only bind (agents cannot read the KV bucket, and must not be
        able to change what restrains them)."""
        self.backend.hand_over_policy(agent, policy.model_dump_json(by_alias=True, indent=2))

    async def _publish_policy(self, agent: str, policy: AgentPolicy) -> None:
        kv = await self._js.key_value(subjects.POLICY_BUCKET)
        await kv.put(agent, bus.encode(policy))

    async def _admit(self, agent: str) -> None:
        """Mint the agent's NATS credential into its state dir (0600, its own uid; one minted before is kept) and
        reload the server."""
        auth = self.settings.nats_auth_dir
        if auth is None:
            return  # an open server (tests against $NATS_URL): agents connect without credentials
        identities = Identities(auth)
        async with self._auth:
            await asyncio.to_thread(self._mint, agent, identities)
            await identities.reload(self.settings.nats_url)

    def _mint(self, agent: str, identities: Identities) -> None:
        identities.add_agent(agent, self.backend.prepare(agent) / "nats.nk")
        self.backend.prepare(agent)  # the new seed file belongs to the agent's uid too

    async def start_agent(self, agent: str, *, restarted: bool) -> None:
        """Start the agent, unless it runs already (started by the resume of a spawner that a kill interrupted, or
        by the run of this command before the kill): that is the end state, not a conflict."""
        self._mark(agent, "running")
        self._crashed.discard(agent)
        if agent in await asyncio.to_thread(self.backend.running, agent):
            log.info("agent=%s outcome=running_already", agent)
            return
        env = {**self.settings.agent_env, "HIVE_NATS_URL": self.settings.nats_url, "HIVE_AGENT": agent,
               "HIVE_STATE_DIR": "/state", "HIVE_POLICY_FILE": f"{POLICY_IN_SANDBOX}/{POLICY_FILE}"}  # fmt: skip
        if self.settings.nats_auth_dir is not None:
            env["HIVE_NATS_CREDS"] = "/state/nats.nk"
        # A thread of the loop's executor, which lives as long as the loop: a sandbox ends when the thread that
        # started it does (the parent-death signal, PR_SET_PDEATHSIG, follows the thread, not the process).
        await asyncio.to_thread(self.backend.start, agent, self.settings.agent_command, env)
        await self._event("agent_started", agent, AgentStarted(agent=agent, restarted=restarted))

    def _exited_in_thread(self, agent: str, code: int | None) -> None:
        """The backend saw an exit nobody asked for (its reader thread calls this)."""
        self._loop.call_soon_threadsafe(self._spawn_task, self._crash(agent, code))

    def _spawn_task(self, work: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _crash(self, agent: str, code: int | None) -> None:
        self._crashed.add(agent)
        log.warning("agent=%s exit_code=%s outcome=crashed", agent, code)
        await self._event("container_crash", agent, ContainerCrash(agent=agent, exit_code=code))
        await self._state_changed(agent)

    async def _transient(self, agent: str, transient: Transient) -> None:
        await self._event("agent_transient", agent, AgentTransient(agent=agent, transient=transient))

    async def _state_changed(self, agent: str) -> None:
        state = (await self.status(agent)).state
        await self._event("agent_state", agent, AgentStateChanged(agent=agent, state=state))

    async def _event(self, type_: str, agent: str, data: BaseModel) -> None:
        event = Event(type=type_, agent=agent, at=datetime.now(UTC), data=data.model_dump())
        await self._js.publish(subjects.event(type_, agent), bus.encode(event))

    # ── what each agent should be doing, kept across spawner restarts ──

    def _marks(self) -> dict[str, str]:
        path = self.state_root / ".desired.json"
        marks: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
        return marks

    def _mark(self, agent: str, desired: str | None) -> None:
        with self._marks_lock:
            marks = self._marks()
            if marks.get(agent) == desired:
                return
            if desired is None:
                del marks[agent]
            else:
                marks[agent] = desired
            write_atomic(self.state_root / ".desired.json", json.dumps(marks, indent=2))

    async def resume(self) -> None:
        """Start again the agents that were running when the spawner stopped (they stop with it); until the hive's
        manager has been started once, create it (the operator who started the hive asked for it: no approval, tag
        proposal/0) — also when a kill interrupted its creation."""
        for agent in await asyncio.to_thread(self.backend.reap_orphans):
            log.warning("agent=%s outcome=orphan_ended (left running by an earlier spawner)", agent)
        if self.settings.bootstrap_manager and MANAGER not in self._marks():
            log.info("agent=%s outcome=bootstrapping", MANAGER)
            await self._resuming(MANAGER, self._spawn(SpawnerCommand(action="spawn", agent=MANAGER,
                                                                     approval_id=BOOTSTRAP)))  # fmt: skip
            return
        wanted = [agent for agent, desired in sorted(self._marks().items()) if desired == "running"]
        up = await asyncio.to_thread(self.backend.running, *wanted)
        for agent in wanted:
            if agent not in up:
                await self._resuming(agent, self.start_agent(agent, restarted=True))

    async def _resuming(self, agent: str, work: Coroutine[Any, Any, None]) -> None:
        """One agent that cannot start (its state dir unreachable, say) must not keep the spawner from serving the
        rest: it is marked crashed, with the reason in the log, for the operator to fix and restart."""
        async with self._busy[agent]:
            try:
                await work
            except HiveError as exc:
                log.error("agent=%s outcome=start_failed error=%s", agent, exc)
                self._crashed.add(agent)
            await self._state_changed(agent)

    async def status(self, agent: str) -> AgentStatus:
        [status] = await asyncio.to_thread(self._statuses, [agent])
        return status

    def _statuses(self, agents: list[str]) -> list[AgentStatus]:
        """Each agent's state from files, and one backend query for all of them: no process per agent."""
        marks, up = self._marks(), self.backend.running(*agents)
        found = []
        for agent in agents:
            applied = self.repos.applied_head(agent)
            state: AgentState
            if marks.get(agent) == "destroyed":
                state = "destroyed"
            elif agent in up:
                state = "running"
            elif agent in self._crashed:
                state = "crashed"
            else:
                state = "stopped" if applied else "draft"
            found.append(AgentStatus(name=agent, state=state, applied=applied, uid=self.backend.uid(agent)))
        return found

    def _names(self) -> list[str]:
        """The agents: every proposed repo, and every tombstone (a purge killed at its end leaves only the mark)."""
        root = self.repos.root / "proposed"
        proposed = {p.name for p in root.iterdir()} if root.is_dir() else set()
        return sorted(proposed | {agent for agent, desired in self._marks().items() if desired == "destroyed"})

    def _known(self, agent: str) -> str:
        if agent not in self._names():
            raise HiveError(ErrorCode.NOT_FOUND, f"There is no agent {agent!r}.")
        return agent

    async def act(self, agent: str, verb: str) -> AgentStatus:
        """start, stop, restart, destroy (a tombstone: state and applied config kept), revive, purge. Each may be
        asked again after a spawner was killed doing it, and ends where one would have."""
        async with self._busy[self._known(agent)]:
            state = (await self.status(agent)).state
            try:
                return await self._act(agent, verb, state)
            finally:
                if verb != "purge":
                    await self._state_changed(agent)

    async def _act(self, agent: str, verb: str, state: str) -> AgentStatus:
        if state == "draft" or (verb in MANAGER_VERBS and state == "destroyed"):
            raise HiveError(ErrorCode.CONFLICT, f"Agent {agent!r} is {state}; it cannot {verb}.")
        if verb == "purge" and state != "destroyed":
            raise HiveError(ErrorCode.CONFLICT, f"Agent {agent!r} is {state}, not destroyed; it cannot {verb}.")
        if verb in TRANSIENTS:
            await self._transient(agent, TRANSIENTS[verb])
        if verb in ("stop", "restart", "destroy"):
            if state != "destroyed":  # what it should be is written first: a resumed spawner must not start it again
                self._mark(agent, "stopped")
            await asyncio.to_thread(self.backend.stop, agent)
            self._crashed.discard(agent)
        if verb in ("start", "restart"):
            await self.start_agent(agent, restarted=verb == "restart")
        elif verb == "destroy":
            await self._revoke(agent)
            self._mark(agent, "destroyed")
            await self._event("agent_destroyed", agent, AgentDestroyed(agent=agent))
        elif verb == "revive":  # also of an agent a revive left half-way, which is no longer marked destroyed
            policy = await asyncio.to_thread(self._evaluate_applied, agent)
            await self._admit(agent)
            await self._publish_policy(agent, policy)
            await self.start_agent(agent, restarted=True)
        elif verb == "purge":
            await asyncio.to_thread(self._purge, agent)
            return AgentStatus(name=agent, state="destroyed")
        status = await self.status(agent)
        log.info("agent=%s verb=%s outcome=%s", agent, verb, status.state)
        return status

    async def _revoke(self, agent: str) -> None:
        """Its credential stops working (the reload closes its connections) and it leaves the recipient lists."""
        kv = await self._js.key_value(subjects.POLICY_BUCKET)
        await kv.delete(agent)
        if self.settings.nats_auth_dir is not None:
            identities = Identities(self.settings.nats_auth_dir)
            async with self._auth:
                await asyncio.to_thread(identities.remove_agent, agent)
                await identities.reload(self.settings.nats_url)

    def _purge(self, agent: str) -> None:
        """The tombstone's mark goes last: until then the agent is known and destroyed, so a purge a kill
        interrupted can be asked again."""
        self.backend.destroy(agent)
        for path in (self.backend.state_dir(agent), self.repos.applied(agent)):
            shutil.rmtree(path, ignore_errors=True)
        self.backend.uids.forget(agent)
        shutil.rmtree(self.repos.proposed(agent), ignore_errors=True)
        self._mark(agent, None)

    # ── operator plane ──

    async def agents(self, subject: str, req: Empty) -> AgentsReply:
        return AgentsReply(agents=await asyncio.to_thread(lambda: self._statuses(self._names())))

    async def logs(self, subject: str, req: LogsRequest) -> LogsReply:
        lines = await asyncio.to_thread(self.backend.journal, self._known(req.agent), req.lines)
        return LogsReply(agent=req.agent, lines=lines)

    async def agent_config(self, subject: str, req: AgentRequest) -> AgentConfigReply:
        return await asyncio.to_thread(self._applied_config, self._known(req.agent))

    def _applied_config(self, agent: str) -> AgentConfigReply:
        sha = self.repos.applied_head(agent)
        if sha is None:
            raise HiveError(ErrorCode.NOT_FOUND, f"Agent {agent!r} has no applied config yet.")
        return AgentConfigReply(
            agent=agent, sha=sha, agent_nix=git(self.repos.applied(agent), "show", f"{sha}:agent.nix")
        )

    def operator_verb(self, verb: str) -> Callable[[str, AgentRequest], Awaitable[AgentStatus]]:
        async def handle(subject: str, req: AgentRequest) -> AgentStatus:
            return await self.act(req.agent, verb)

        return handle

    async def manager_verb(self, subject: str, req: AgentRequest) -> AgentStatus:
        """`hive.agent.<name>.lifecycle.<verb>`: only the manager, never on itself, only start/stop/restart."""
        caller, verb = subjects.caller(subject), subject.rsplit(".", 1)[-1]
        if caller != MANAGER:
            await self._event("lifecycle_refused", caller, LifecycleRefused(caller=caller, agent=req.agent, verb=verb))
            raise HiveError(ErrorCode.NOT_MANAGER, f"Only the manager may {verb} agents; ask the manager.")
        if verb not in MANAGER_VERBS:
            raise HiveError(ErrorCode.INVALID_REQUEST, f"The manager may {', '.join(MANAGER_VERBS)}; not {verb!r}.")
        if req.agent == MANAGER:
            raise HiveError(ErrorCode.NOT_ALLOWED, "The manager cannot stop or restart itself; ask the operator.")
        return await self.act(req.agent, verb)

    def _draft(self, agent: str, *, bootstrap: bool = False) -> None:
        """A new agent's repos and state dir, made or finished. Only the hive's own bootstrap may create the
        manager."""
        name = check_agent_ref(agent) if bootstrap and agent == MANAGER else check_agent_name(agent)
        if not self.repos.exists(name):
            self._mark(name, None)  # what a purge killed at its very end left of an earlier agent of this name
        self.repos.create(name, grant=self.backend.grant_manager)
        (self.state_root / name).mkdir(parents=True, exist_ok=True, mode=0o700)

    async def work(self) -> None:
        """Follow this host's work queue until cancelled."""
        durable = f"spawner-{self.host}"
        sub = await self._js.pull_subscribe(
            subjects.spawner_cmd(self.host),
            durable=durable,
            stream=subjects.SPAWNER_CMD_STREAM,
            config=js_api.ConsumerConfig(ack_policy=js_api.AckPolicy.EXPLICIT, ack_wait=300),
        )
        await self._release_in_flight()
        await bus.each(self._nc, sub, SpawnerCommand, self._carry_out, batch=1)

    async def _release_in_flight(self) -> None:
        """A spawner killed while applying a command leaves its delivery token: hand it back, so the command is taken
        up again now rather than after ack_wait (300 s)."""
        text = read_untrusted(self.state_root / IN_FLIGHT)
        if text:
            with contextlib.suppress(nats.errors.Error):
                await self._nc.request(text, b"-NAK", timeout=2)
            log.warning("outcome=in_flight_command_resumed token=%s", text)
        (self.state_root / IN_FLIGHT).unlink(missing_ok=True)

    async def _carry_out(self, msg: Msg, command: SpawnerCommand) -> None:
        write_atomic(self.state_root / IN_FLIGHT, msg.reply)
        try:
            await self._apply_and_report(msg, command)
        finally:
            (self.state_root / IN_FLIGHT).unlink(missing_ok=True)

    async def _apply_and_report(self, msg: Msg, command: SpawnerCommand) -> None:
        try:
            await self.apply(command)
            outcome = OutcomeRequest(approval_id=command.approval_id, ok=True)
        except HiveError as exc:
            outcome = OutcomeRequest(approval_id=command.approval_id, ok=False, reason=exc.message)
        log.info("approval=%d action=%s agent=%s ok=%s", command.approval_id, command.action, command.agent, outcome.ok)
        try:
            await bus.call(self._nc, subjects.operator(subjects.APPROVER, "outcome"), outcome, Approval)
        except HiveError as exc:
            if exc.code == ErrorCode.NOT_FOUND:  # no such approval: nothing will ever take this outcome
                await bus.set_aside(self._nc, msg, f"approval #{command.approval_id} does not exist: {exc.message}")
                return
            if exc.code != ErrorCode.CONFLICT:  # CONFLICT: reported before a crash; the approver has it
                log.warning("approval=%d outcome=unreported error=%s", command.approval_id, exc)
                return  # not acked: it comes again
        await msg.ack()

    def endpoints(self) -> list[bus.Endpoint[Any]]:
        E = bus.Endpoint
        op = subjects.operator
        S = subjects.SPAWNER
        return [
            E("freeze", op(S, "freeze"), FreezeRequest, self.freeze),
            E("agents", op(S, "agents"), Empty, self.agents),
            E("logs", op(S, "logs"), LogsRequest, self.logs),
            E("agent-config", op(S, "agent-config"), AgentRequest, self.agent_config),
            *(E(verb, op(S, verb), AgentRequest, self.operator_verb(verb)) for verb in OPERATOR_VERBS),
            E("lifecycle", subjects.agent_any("lifecycle.*"), AgentRequest, self.manager_verb),
        ]
