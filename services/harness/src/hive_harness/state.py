"""What the harness keeps in the agent's state dir, so a restart loses nothing — and reads back as untrusted: the
agent can write every file there."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import TypeAdapter

from hyperhive.files import read_untrusted, write_atomic
from hyperhive.wire.models import MODEL_PATTERN, AgentPolicy, Message

log = logging.getLogger("hive_harness.state")

MESSAGES = TypeAdapter(list[Message])
# What the harness's own files in the agent's state dir may hold: a session id goes to `--resume` and a model name to
# `--model` as CLI arguments, so anything else (an option such as `--setting-sources=user`) must read as absent.
SHAPES = {
    "session-id": re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
    "hyperhive-model": re.compile(MODEL_PATTERN),
}


@dataclass
class StateFiles:
    """What the harness keeps in the agent's state dir, so a restart loses nothing."""

    root: Path

    def read(self, name: str) -> str | None:
        """The file's text; the agent can write every file here, so anything but a small text file, or text that
        is not what `name` holds (a session id, a model name), reads as absent."""
        return read_untrusted(self.root / name, SHAPES.get(name))

    def write(self, name: str, text: str) -> None:
        write_atomic(self.root / name, text)

    def remove(self, name: str) -> None:
        (self.root / name).unlink(missing_ok=True)

    def messages(self, name: str) -> list[Message]:
        """The messages kept in `name` (a turn's, or those carried to the next); unreadable ones are dropped."""
        text = self.read(name)
        try:
            return MESSAGES.validate_json(text) if text else []
        except ValueError:
            log.warning("file=%s outcome=unreadable; its messages are dropped", self.root / name)
            return []

    def keep_messages(self, name: str, messages: list[Message]) -> None:
        """Keep `messages` in `name`; none removes it."""
        if messages:
            self.write(name, MESSAGES.dump_json(messages, by_alias=True).decode())
        else:
            self.remove(name)


def read_policy(path: Path, agent: str) -> tuple[AgentPolicy, str]:
    """The applied policy from the spawner's read-only file (agents cannot read the KV bucket themselves), and what
    is wrong with it: a missing, unreadable, invalid or foreign file gives the defaults and the reason."""
    try:
        policy = AgentPolicy.model_validate_json(path.read_bytes())
        problem = "" if policy.agent == agent else f"{path} is the policy of {policy.agent}"
    except (OSError, ValueError) as exc:
        policy, problem = AgentPolicy(agent=agent), f"{path}: {str(exc).splitlines()[0]}"
    return (AgentPolicy(agent=agent) if problem else policy), problem
