"""NATS identity: one nkey user per service, one for the operator, one per agent and one per tool the operator
admitted — each agent and each tool in a NATS account of its own.

The server's permissions and accounts are the security boundary. Host principals share the `HIVE` account (which
owns JetStream); every agent is alone in its own account, and reaches the hive only through the service imports
its account is given: its own agent plane, pulling and acknowledging its own inbox consumer. A reply subject an
agent sets is remapped by the server into a private `_R_` subject that leads back into the agent's account, so
nothing an agent publishes, and nothing the server or a service answers on its behalf, can land on a subject of
the hive (see docs/decisions/0008-agent-accounts.md).

`Identities` keeps the registry on disk under one folder: `seeds/<principal>.nk` for host principals (mode 0600),
`agents/<name>.pub` for agents (their seeds live in their own state dirs), `tools/<name>.json` for tools (their
grant; the seed stays with the tool, which made it), and the generated `auth.conf` that the
nats-server configuration includes. Adding or removing an agent rewrites `auth.conf` atomically; `reload` applies
it and closes the connections of users that are gone.
"""

from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nats
import nkeys

from hyperhive.files import write_atomic, write_secret
from hyperhive.wire import subjects
from hyperhive.wire.models import ToolGrant
from hyperhive.wire.names import OPERATOR, check_agent_ref

Role = Literal["service", "operator", "agent", "tool"]


def mint_seed(path: Path) -> str:
    """Create a user nkey seed at `path` (kept if it exists) and return its public key."""
    if not path.exists():
        write_secret(path, nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER))
    return public_key(path)


def public_key(seed_path: Path) -> str:
    pair = nkeys.from_seed(bytearray(seed_path.read_bytes().strip()))
    try:
        return str(pair.public_key.decode())
    finally:
        pair.wipe()


HIVE_ACCOUNT = "HIVE"
SYSTEM_ACCOUNT = "SYS"
SYSTEM = "system"  # the principal that asks the server to reload its configuration
# How long a reply mapping across an account boundary lives: longer than the longest wait an agent may ask for (a
# 180 s inbox pull, a 180 s wait for a decision), so a long poll's answer still finds its way back.
RESPONSE_THRESHOLD = "5m"


def agent_account(name: str) -> str:
    return f"agent-{check_agent_ref(name)}"


def tool_account(name: str) -> str:
    return f"tool-{check_agent_ref(name)}"


def _inbox_consumer(name: str) -> str:
    return f"{subjects.INBOX_STREAM}.inbox-{name}"


def agent_plane(name: str) -> list[str]:
    """What agent `name` may publish, all of it imported from the hive: its agent plane, and pulling from and
    acknowledging its own inbox consumer, nobody else's."""
    inbox = _inbox_consumer(name)
    return [f"{subjects.AGENT_PREFIX}.{name}.>", f"$JS.API.CONSUMER.MSG.NEXT.{inbox}", f"$JS.ACK.{inbox}.>"]


def permissions(role: Role, name: str, verbs: tuple[str, ...] = ()) -> dict[str, Any]:
    """What a principal may publish and subscribe to, inside its account.

    An agent publishes only its own agent plane (and its hook's `waiting` notice to its own harness), and subscribes
    only to its own reply inbox and its harness plane. A tool publishes only its granted `verbs` on its own tool
    plane, and subscribes only to `_INBOX.>` — of its own account, which holds nobody else — so any NATS client's
    default reply inbox works. No host principal may publish on an agent's or a tool's plane, so nobody can speak
    as one.
    """
    if role == "tool":
        return {
            "publish": {"allow": [subjects.tool(name, verb) for verb in verbs]},
            "subscribe": {"allow": ["_INBOX.>"]},
        }
    if role == "agent":
        return {
            "publish": {"allow": [*agent_plane(name), f"{subjects.HARNESS_PREFIX}.{name}.waiting"]},
            "subscribe": {"allow": [f"{subjects.reply_prefix(name)}.>", f"{subjects.HARNESS_PREFIX}.{name}.>"]},
            # Answers to the harness plane's requests, whose replies the server maps back to the asker.
            "allow_responses": True,
        }
    if role == "operator":
        return {
            "publish": {
                "allow": [
                    *(f"{subjects.ROOT}.{service}.>" for service in subjects.SERVICES),
                    f"{subjects.HARNESS_PREFIX}.>",
                    "$SRV.>",
                    "$JS.API.>",
                    "$JS.ACK.>",
                    "$JS.FC.>",
                ],
                # Only services speak as agents, queue commands, or report how applying went.
                "deny": [
                    f"{subjects.AGENT_PREFIX}.>",
                    f"{subjects.TOOL_PREFIX}.>",
                    f"{subjects.SPAWNER_CMD_PREFIX}.>",
                    subjects.operator(subjects.APPROVER, "outcome"),
                ],
            },
            "subscribe": {"allow": [f"{subjects.reply_prefix(OPERATOR)}.>"]},
        }
    return {
        "publish": {"allow": [">"], "deny": [f"{subjects.AGENT_PREFIX}.>", f"{subjects.TOOL_PREFIX}.>"]},
        "subscribe": {"allow": [">"]},
    }


def accounts(principals: list[Principal], system_key: str) -> dict[str, Any]:
    """The server's accounts: the hive's, the system's, and one per agent, with the imports that connect them.

    Everything an agent reaches in the hive is a service import, never a stream import: a service import remaps the
    reply subject, so the answer (from a service, or from JetStream itself) goes back into the agent's account and
    nowhere else. The hive imports each agent's harness plane the same way."""
    hive: dict[str, Any] = {"jetstream": "enabled", "users": [], "exports": [], "imports": []}
    found: dict[str, Any] = {HIVE_ACCOUNT: hive, SYSTEM_ACCOUNT: {"users": [{"nkey": system_key}]}}
    for p in principals:
        user = {"nkey": p.public_key, "permissions": permissions(p.role, p.name, p.verbs)}
        if p.role == "tool":  # its verbs, imported from the hive: each answer remapped back into its account
            account, plane = tool_account(p.name), [subjects.tool(p.name, verb) for verb in p.verbs]
            hive["exports"] += [{"service": s, "accounts": [account]} for s in plane]
            found[account] = {
                "users": [user],
                "imports": [{"service": {"account": HIVE_ACCOUNT, "subject": s}} for s in plane],
            }
            continue
        if p.role != "agent":
            hive["users"].append(user)
            continue
        account = agent_account(p.name)
        harness_plane = f"{subjects.HARNESS_PREFIX}.{p.name}.>"
        hive["exports"] += [
            {
                "service": subject,
                "accounts": [account],
                "response_type": "stream" if "MSG.NEXT" in subject else "singleton",
                "response_threshold": RESPONSE_THRESHOLD,
            }
            for subject in agent_plane(p.name)
        ]
        hive["imports"].append({"service": {"account": account, "subject": harness_plane}})
        found[account] = {
            "users": [user],
            "exports": [{"service": harness_plane, "accounts": [HIVE_ACCOUNT]}],
            "imports": [{"service": {"account": HIVE_ACCOUNT, "subject": s}} for s in agent_plane(p.name)],
        }
    return found


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    public_key: str
    verbs: tuple[str, ...] = ()  # a tool's


class Identities:
    """The hive's NATS users, kept as files under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.auth_conf = root / "auth.conf"

    def seed_path(self, name: str) -> Path:
        return self.root / "seeds" / f"{name}.nk"

    def _agent_pub(self, name: str) -> Path:
        return self.root / "agents" / f"{check_agent_ref(name)}.pub"

    def ensure_host(self, services: tuple[str, ...] = subjects.SERVICES) -> None:
        """Mint the seeds of the host services, the operator and the system user (kept across runs) and render
        auth.conf."""
        for name in (*services, OPERATOR, SYSTEM):
            mint_seed(self.seed_path(name))
        self.render()

    def add_agent(self, name: str, seed_path: Path) -> str:
        """Mint agent `name`'s credential into `seed_path` (0600) and authorize it. Needs a reload to apply."""
        public = mint_seed(seed_path)
        write_atomic(self._agent_pub(name), public + "\n")
        self.render()
        return public

    def remove_agent(self, name: str) -> None:
        """Revoke agent `name`. After the reload its connections are closed and it cannot connect again."""
        self._agent_pub(name).unlink(missing_ok=True)
        self.render()

    def _tool_file(self, name: str) -> Path:
        return self.root / "tools" / f"{check_agent_ref(name)}.json"

    def add_tool(self, grant: ToolGrant) -> None:
        """Admit a tool (or change its grant or key). Needs a reload to apply."""
        write_atomic(self._tool_file(grant.name), grant.model_dump_json(indent=2))
        self.render()

    def remove_tool(self, name: str) -> None:
        """Revoke tool `name`. After the reload its connections are closed and it cannot connect again."""
        self._tool_file(name).unlink(missing_ok=True)
        self.render()

    def tools(self) -> list[ToolGrant]:
        return [ToolGrant.model_validate_json(f.read_text()) for f in sorted((self.root / "tools").glob("*.json"))]

    def principals(self) -> list[Principal]:
        found: list[Principal] = []
        for seed in sorted((self.root / "seeds").glob("*.nk")):
            if seed.stem != SYSTEM:
                role: Role = "operator" if seed.stem == OPERATOR else "service"
                found.append(Principal(seed.stem, role, public_key(seed)))
        for pub in sorted((self.root / "agents").glob("*.pub")):
            found.append(Principal(check_agent_ref(pub.stem), "agent", pub.read_text().strip()))
        found += [Principal(t.name, "tool", t.public_key, t.verbs) for t in self.tools()]
        return found

    def render(self) -> None:
        config = accounts(self.principals(), public_key(self.seed_path(SYSTEM)))
        # JSON is valid nats-server configuration syntax, and quotes every subject safely.
        text = f"system_account: {json.dumps(SYSTEM_ACCOUNT)}\naccounts " + json.dumps(config, indent=2) + "\n"
        write_atomic(self.auth_conf, text)

    async def reload(self, nats_url: str) -> None:
        """Apply auth.conf now, and return once the server has: asked as the system user, which the server answers
        when the reload is done (a SIGHUP says nothing back).

        Twice: nats-server (2.15) wires the service imports of an account that a reload *adds* to a stale copy of
        the hive's account, so the new agent's requests find no responders until the next reload; a second reload,
        with nothing else changed, connects them (tests/foundation/test_identity.py proves an agent added this way
        is reachable at once)."""
        nc = await nats.connect(
            nats_url, nkeys_seed=str(self.seed_path(SYSTEM)), allow_reconnect=False, name="hive-reload"
        )
        try:
            server = json.loads((await nc.request("$SYS.REQ.SERVER.PING", b"", timeout=5)).data)["server"]["id"]
            for _ in range(2):
                answer = json.loads((await nc.request(f"$SYS.REQ.SERVER.{server}.RELOAD", b"", timeout=10)).data)
                if "error" in answer:
                    raise RuntimeError(f"nats-server refused to reload its configuration: {answer['error']}")
        finally:
            await nc.close()


class Reloads:
    """The server's reloads of auth.conf, coalesced: a caller that changed the registry (under its own lock) waits
    until a reload that began after its change has completed, and one reload serves everyone who changed it
    meanwhile. A hundred agents admitted at once cost a handful of reloads, not a hundred — each of which would
    close and reconnect the connections of every account it changes."""

    def __init__(self, identities: Identities, nats_url: str) -> None:
        self.identities = identities
        self.nats_url = nats_url
        self._lock = asyncio.Lock()
        self._changes = 0  # changes made so far
        self._applied = 0  # changes a completed reload has applied

    async def after_change(self) -> None:
        self._changes += 1
        mine = self._changes
        async with self._lock:
            if self._applied >= mine:
                return  # a reload that began after this change has done it
            covers = self._changes
            await self.identities.reload(self.nats_url)
            self._applied = max(self._applied, covers)


def server_config(
    identities: Identities,
    *,
    host: str,
    port: int,
    store_dir: Path,
    pid_file: Path,
    max_payload: int = 1 << 20,
    max_file_store: int | None = None,
) -> str:
    """The nats-server configuration of a hive: JetStream on, loopback by default, users from auth.conf.

    Write it into `identities.root`: the include is relative to the configuration file. `max_file_store` caps the
    JetStream store in bytes (by default the server's own: most of the disk).
    """
    cap = f", max_file_store: {max_file_store}" if max_file_store is not None else ""
    return "\n".join(
        [
            f"listen: {json.dumps(f'{host}:{port}')}",
            f"pid_file: {json.dumps(str(pid_file))}",
            f"max_payload: {max_payload}",
            f"jetstream {{ store_dir: {json.dumps(str(store_dir))}{cap} }}",
            f"include {json.dumps(identities.auth_conf.name)}",
            "",
        ]
    )
