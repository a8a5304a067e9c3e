"""NATS identity: one nkey user per service, one for the operator's tools, one per agent.

The server's permissions are the security boundary. `Identities` keeps the registry on disk under one folder:
`seeds/<principal>.nk` for host principals (mode 0600), `agents/<name>.pub` for agents (their seeds live in their
own state dirs), and the generated `auth.conf` that the nats-server configuration includes. Adding or removing an
agent rewrites `auth.conf` atomically; a config reload (SIGHUP) applies it and closes the connections of users
that are gone. See docs/decisions/0001-nats-identity.md.
"""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import nkeys

from hyperhive.wire import subjects
from hyperhive.wire.names import OPERATOR, check_agent_ref

Role = Literal["service", "operator", "agent"]
SECRET_MODE = 0o600


def write_secret(path: Path, data: bytes) -> None:
    """Write a secret file atomically with mode 0600 from its first byte."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, SECRET_MODE)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


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


def permissions(role: Role, name: str) -> dict[str, Any]:
    """What a principal may publish and subscribe to.

    An agent publishes only under its own `hive.agent.<name>.>`, and subscribes only to its own reply inbox and
    its harness plane. No host principal may publish on the agent plane, so nobody can speak as an agent.
    """
    if role == "agent":
        inbox = f"{subjects.INBOX_STREAM}.inbox-{name}"
        return {
            # Its own agent plane; and pulling from and acknowledging its own inbox consumer, nobody else's.
            "publish": {
                "allow": [
                    f"{subjects.AGENT_PREFIX}.{name}.>",
                    f"$JS.API.CONSUMER.MSG.NEXT.{inbox}",
                    f"$JS.ACK.{inbox}.>",
                    # Its PreToolUse hook tells its own harness that a tool call waits for the operator.
                    f"{subjects.HARNESS_PREFIX}.{name}.waiting",
                ]
            },
            "subscribe": {"allow": [f"{subjects.reply_prefix(name)}.>", f"{subjects.HARNESS_PREFIX}.{name}.>"]},
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
                    f"{subjects.SPAWNER_CMD_PREFIX}.>",
                    subjects.operator(subjects.APPROVER, "outcome"),
                ],
            },
            "subscribe": {"allow": [f"{subjects.reply_prefix(OPERATOR)}.>"]},
        }
    return {
        "publish": {"allow": [">"], "deny": [f"{subjects.AGENT_PREFIX}.>"]},
        "subscribe": {"allow": [">"]},
    }


@dataclass(frozen=True)
class Principal:
    name: str
    role: Role
    public_key: str


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
        """Mint the seeds of the host services and the operator (kept across runs) and render auth.conf."""
        for name in (*services, OPERATOR):
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

    def principals(self) -> list[Principal]:
        found: list[Principal] = []
        for seed in sorted((self.root / "seeds").glob("*.nk")):
            role: Role = "operator" if seed.stem == OPERATOR else "service"
            found.append(Principal(seed.stem, role, public_key(seed)))
        for pub in sorted((self.root / "agents").glob("*.pub")):
            found.append(Principal(check_agent_ref(pub.stem), "agent", pub.read_text().strip()))
        return found

    def render(self) -> None:
        users = [{"nkey": p.public_key, "permissions": permissions(p.role, p.name)} for p in self.principals()]
        # JSON is valid nats-server configuration syntax, and quotes every subject safely.
        write_atomic(self.auth_conf, "authorization " + json.dumps({"users": users}, indent=2) + "\n")


def server_config(
    identities: Identities,
    *,
    host: str,
    port: int,
    store_dir: Path,
    pid_file: Path,
    max_payload: int = 1 << 20,
) -> str:
    """The nats-server configuration of a hive: JetStream on, loopback by default, users from auth.conf.

    Write it into `identities.root`: the include is relative to the configuration file.
    """
    return "\n".join(
        [
            f"listen: {json.dumps(f'{host}:{port}')}",
            f"pid_file: {json.dumps(str(pid_file))}",
            f"max_payload: {max_payload}",
            f"jetstream {{ store_dir: {json.dumps(str(store_dir))} }}",
            f"include {json.dumps(identities.auth_conf.name)}",
            "",
        ]
    )


def reload(pid_file: Path) -> None:
    """Ask the nats-server to re-read its configuration (what `nats-server --signal reload` does)."""
    os.kill(int(pid_file.read_text().strip()), signal.SIGHUP)
