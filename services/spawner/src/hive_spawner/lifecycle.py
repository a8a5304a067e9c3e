"""The spawner's agents, what each is and what it should be: the desired state kept across spawner restarts
(`.desired.json`), each agent's state from files and one backend query, starting and resuming them, a crash, and the
operator's and manager's verbs (start, stop, restart, destroy, revive, purge). Each verb asked again after a kill
ends where one would have; one agent changes one step at a time."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import threading
from collections import defaultdict
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.js import JetStreamContext
from pydantic import BaseModel

from hive_spawner.backend import Backend, make_backend
from hive_spawner.dirs import POLICY_FILE, POLICY_IN_SANDBOX
from hive_spawner.evaluate import evaluate
from hive_spawner.repos import ConfigRepos
from hive_spawner.settings import SpawnerSettings
from hive_spawner.slots import Slots
from hive_spawner.tools import Tools
from hyperhive import bus, credential, events
from hyperhive.files import write_atomic
from hyperhive.identity import Identities, Reloads
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    AgentDestroyed,
    AgentPolicy,
    AgentStarted,
    AgentState,
    AgentStateChanged,
    AgentStatus,
    AgentTransient,
    ContainerCrash,
    SpawnerCommand,
    Transient,
)
from hyperhive.wire.names import MANAGER

log = logging.getLogger("hive_spawner")

MANAGER_VERBS = ("start", "stop", "restart")
OPERATOR_VERBS = (*MANAGER_VERBS, "destroy", "revive", "purge")
TRANSIENTS: dict[str, Transient] = {
    "start": "starting",
    "stop": "stopping",
    "restart": "restarting",
    "destroy": "destroying",
    "revive": "reviving",
}
BOOTSTRAP = 0  # the approval id of the manager's creation at a hive's first start (approvals count from 1)


class Lifecycle:
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
        self.backend: Backend = make_backend(settings, state_root, repos, self._exited_in_thread)
        self._crashed: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._busy: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)  # one change of an agent at a time
        self._auth = asyncio.Lock()  # auth.conf is rendered whole from the registry: one change at a time
        auth = settings.nats_auth_dir
        self._reloads = Reloads(Identities(auth), settings.nats_url) if auth is not None else None
        self.tools = Tools(js, self._reloads, self._names, self._auth)
        self.slots = Slots(settings.turn_slots)
        self._marks_lock = threading.Lock()
        for lock in self.repos.clear_stale_locks():
            log.warning("lock=%s outcome=stale_git_lock_removed", lock)

    def _evaluate(self, files: Path, agent: str) -> AgentPolicy:
        """A checkout's agent.nix with this spawner's nixpkgs lib and default model."""
        return evaluate(files, agent, nix_lib=self.settings.nix_lib, default_model=self.settings.default_model)

    def _evaluate_applied(self, agent: str) -> AgentPolicy:
        """revive: the applied commit evaluated again, and its policy handed over."""
        with self.repos.checkout_applied(agent) as files:
            policy = self._evaluate(files, agent)
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
        if self._reloads is None:
            return  # an open server (no HIVE_NATS_AUTH_DIR): agents connect without credentials
        async with self._auth:
            await asyncio.to_thread(self._mint, agent, self._reloads.identities)
        await self._reloads.after_change()

    def _mint(self, agent: str, identities: Identities) -> None:
        identities.add_agent(agent, self.backend.prepare(agent) / "nats.nk")
        self.backend.prepare(agent)  # the new seed file belongs to the agent's uid too

    async def start_agent(self, agent: str, *, restarted: bool) -> None:
        """Start the agent, unless it runs already (started by the resume of a spawner that a kill interrupted, or
        by the run of this command before the kill): that is the end state, not a conflict — once its start has
        been announced.

        The mark says `starting` from before the start until `agent_started` (which wakes the agent) is published,
        then `running`: a container outlives a spawner killed in between (nixos), and the next one announces it."""
        if self._marks().get(agent) != "running":
            self._mark(agent, "starting")
        self._crashed.discard(agent)
        await self.slots.give_back(agent)  # a harness that died mid-turn hands nothing on
        if agent in await asyncio.to_thread(self.backend.running, agent):
            log.info("agent=%s outcome=running_already", agent)
            if self._marks().get(agent) == "starting":
                await self._announce(agent, restarted)
            return
        self._mark(agent, "starting")
        env = {
            **self.settings.agent_env,
            "HIVE_NATS_URL": self.settings.nats_url,
            "HIVE_AGENT": agent,
            "HIVE_STATE_DIR": "/state",
            "HIVE_POLICY_FILE": f"{POLICY_IN_SANDBOX}/{POLICY_FILE}",
        }
        if self.settings.nats_auth_dir is not None:
            env["HIVE_NATS_CREDS"] = "/state/nats.nk"
        await asyncio.to_thread(self._hand_over_credential, agent)
        # A thread of the loop's executor, which lives as long as the loop: a sandbox ends when the thread that
        # started it does (the parent-death signal, PR_SET_PDEATHSIG, follows the thread, not the process).
        await asyncio.to_thread(self.backend.start, agent, self.settings.agent_command, env)
        await self._announce(agent, restarted)

    async def _announce(self, agent: str, restarted: bool) -> None:
        await self._event("agent_started", agent, AgentStarted(agent=agent, restarted=restarted))
        self._mark(agent, "running")

    def _hand_over_credential(self, agent: str) -> None:
        path = self.settings.credential_file
        if path is not None:  # unset, a hive's agents authenticate as agent_env says (the demo, tests)
            self.backend.hand_over_credential(agent, credential.read(path))

    async def hand_over_credential(self) -> list[AgentStatus]:
        """`hivectl login` stored a new credential: every agent that has a state dir gets it (a running one at its
        next turn). A tombstone keeps none."""
        agents = await asyncio.to_thread(lambda: self._statuses(self._names()))
        for status in agents:
            if status.state == "destroyed":
                await asyncio.to_thread(self.backend.hand_over_credential, status.name, None)
            elif self.backend.state_dir(status.name).is_dir():
                await asyncio.to_thread(self._hand_over_credential, status.name)
        log.info("agents=%d outcome=credential_handed_over", len(agents))
        return agents

    def _exited_in_thread(self, agent: str, code: int | None) -> None:
        """The backend saw an exit nobody asked for (its reader thread calls this)."""
        self._loop.call_soon_threadsafe(self._spawn_task, self._crash(agent, code))

    def _spawn_task(self, work: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _crash(self, agent: str, code: int | None) -> None:
        self._crashed.add(agent)
        await self.slots.give_back(agent)
        log.warning("agent=%s exit_code=%s outcome=crashed", agent, code)
        await self._event("container_crash", agent, ContainerCrash(agent=agent, exit_code=code))
        await self._state_changed(agent)

    async def _transient(self, agent: str, transient: Transient) -> None:
        await self._event("agent_transient", agent, AgentTransient(agent=agent, transient=transient))

    async def _state_changed(self, agent: str) -> None:
        state = (await self.status(agent)).state
        await self._event("agent_state", agent, AgentStateChanged(agent=agent, state=state))

    async def _event(self, kind: str, agent: str, data: BaseModel) -> None:
        await events.publish(self._nc, kind, data, about=agent)

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
            await self._resuming(
                MANAGER, self._spawn(SpawnerCommand(action="spawn", agent=MANAGER, approval_id=BOOTSTRAP))
            )
            return
        marks = self._marks()
        wanted = [agent for agent, desired in sorted(marks.items()) if desired in ("running", "starting")]
        up = await asyncio.to_thread(self.backend.running, *wanted)
        for agent in wanted:
            if agent not in up or marks[agent] == "starting":
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
            await self.slots.give_back(agent)
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
        if self._reloads is not None:
            async with self._auth:
                await asyncio.to_thread(self._reloads.identities.remove_agent, agent)
            await self._reloads.after_change()

    def _purge(self, agent: str) -> None:
        """The tombstone's mark goes last: until then the agent is known and destroyed, so a purge a kill
        interrupted can be asked again."""
        self.backend.destroy(agent)
        for path in (self.backend.state_dir(agent), self.repos.applied(agent)):
            shutil.rmtree(path, ignore_errors=True)
        self.backend.uids.forget(agent)
        shutil.rmtree(self.repos.proposed(agent), ignore_errors=True)
        self._mark(agent, None)

    async def _spawn(self, command: SpawnerCommand) -> None:
        """Create and start an agent from an approved command (`Commands`); the bootstrap of the manager uses it."""
        raise NotImplementedError
