"""The turn loop: wait for messages (pushed, a long poll), wake the model with a short prompt, run the turn with the
real `claude` CLI, acknowledge the messages once the turn has started, and publish what happened."""

from __future__ import annotations

import json
import logging
import shlex
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from pydantic import Field

from hive_harness.turn import TurnResult, run_turn
from hyperhive import bus
from hyperhive.identity import write_atomic
from hyperhive.inbox import Inbox
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentPolicy, Event, Message

log = logging.getLogger("hive_harness")

DEFAULT_MODEL = "claude-sonnet-4-5"


class HarnessSettings(HiveSettings):
    agent: str = Field(description="The agent this harness runs (its credential must be that agent's).")
    claude: list[str] = Field(default_factory=lambda: ["claude"], description="How to run the claude CLI (JSON list).")
    claude_env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment for the CLI (API base URL and key, …)."
    )


@dataclass
class StateFiles:
    """What the harness keeps in the agent's state dir, so a restart loses nothing."""

    root: Path

    def read(self, name: str) -> str | None:
        path = self.root / name
        return path.read_text().strip() if path.exists() else None

    def write(self, name: str, text: str) -> None:
        write_atomic(self.root / name, text)

    def policy(self, agent: str) -> AgentPolicy:
        """The applied policy the spawner wrote here (agents cannot read the KV bucket themselves)."""
        text = self.read("policy.json")
        return AgentPolicy.model_validate_json(text) if text else AgentPolicy(agent=agent)


def wake_prompt(messages: list[Message], unread: int) -> str:
    lines = [f"You have {len(messages)} new message{'s' if len(messages) != 1 else ''}."]
    for m in messages:
        again = " (delivered again after a restart: you may have handled it already)" if m.redelivered else ""
        lines.append(f"From {m.sender}{' to everyone' if m.broadcast else ''}{again}:\n{m.body}")
    if unread:
        lines.append(f"{unread} more unread: use the recv tool.")
    return "\n\n".join(lines)


class Harness:
    def __init__(self, nc: Client, settings: HarnessSettings) -> None:
        self.nc = nc
        self.settings = settings
        self.agent = settings.agent
        self.files = StateFiles(settings.state_dir)
        self.inbox = Inbox(nc, self.agent, held_file=settings.state_dir / "harness-held.json")

    async def open(self) -> None:
        await self.inbox.open()

    def model(self, policy: AgentPolicy) -> str:
        """The operator's /model override (kept in /state/hyperhive-model) over agent.nix's model."""
        return self.files.read("hyperhive-model") or policy.model or DEFAULT_MODEL

    def mcp_flags(self, policy: AgentPolicy) -> list[str]:
        """The rendered --mcp-config: our hyperhive server (its name cannot be taken) and agent.nix's extra ones."""
        env = {"HIVE_AGENT": self.agent, "HIVE_NATS_URL": self.settings.nats_url,
               "HIVE_STATE_DIR": str(self.settings.state_dir)}  # fmt: skip
        if self.settings.nats_creds is not None:
            env["HIVE_NATS_CREDS"] = str(self.settings.nats_creds)
        servers: dict[str, Any] = {
            name: {"type": "stdio", "command": s.command, "args": s.args, "env": s.env}
            for name, s in policy.mcp_servers.items()
            if name != "hyperhive"
        }
        servers["hyperhive"] = {"type": "stdio", "command": sys.executable, "args": ["-m", "hive_harness.tools"],
                                "env": env}  # fmt: skip
        self.files.write("mcp.json", json.dumps({"mcpServers": servers}, indent=2))
        allowed = ["mcp__hyperhive"] + [
            f"mcp__{name}__{tool}" for name, s in policy.mcp_servers.items() if name != "hyperhive"
            for tool in s.allowed_tools
        ]  # fmt: skip
        hook = {"type": "command", "command": shlex.join([sys.executable, "-m", "hive_harness.hook"]),
                "timeout": 600}  # fmt: skip
        settings = {"hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [hook]}]}}
        self.files.write("claude-settings.json", json.dumps(settings, indent=2))
        state = self.settings.state_dir
        return [
            "--mcp-config", str(state / "mcp.json"), "--strict-mcp-config",
            "--allowedTools", ",".join(allowed),
            "--settings", str(state / "claude-settings.json"),
        ]  # fmt: skip

    def hook_env(self) -> dict[str, str]:
        """The CLI's environment, which its hooks inherit: who the agent is and how it reaches the hive."""
        env = {"PATH": "/usr/bin:/bin", "HOME": str(self.settings.state_dir), "HIVE_AGENT": self.agent,
               "HIVE_NATS_URL": self.settings.nats_url, "HIVE_STATE_DIR": str(self.settings.state_dir)}  # fmt: skip
        if self.settings.nats_creds is not None:
            env["HIVE_NATS_CREDS"] = str(self.settings.nats_creds)
        return env

    async def run_once(self, wait: float) -> TurnResult | None:
        """Take what is waiting (up to `wait` seconds for the first message) and run one turn for it."""
        messages, unread = await self.inbox.take(max_messages=8, wait=wait)
        if not messages:
            return None
        policy = self.files.policy(self.agent)
        tokens = [m.token for m in messages]
        started = False

        async def on_event(event: dict[str, Any]) -> None:
            nonlocal started
            if not started:  # the turn has started: the messages have reached the model
                started = True
                await self.inbox.ack(tokens)
            envelope = Event(type="turn_event", agent=self.agent, at=datetime.now(UTC), data=event)
            await self.nc.publish(subjects.agent_event(self.agent, "turn"), bus.encode(envelope))

        result = await run_turn(
            agent=self.agent,
            claude=self.settings.claude,
            prompt=wake_prompt(messages, unread),
            model=self.model(policy),
            flags=self.mcp_flags(policy),
            session=self.files.read("session-id"),
            cwd=self.settings.state_dir,
            env={**self.hook_env(), **self.settings.claude_env},
            on_event=on_event,
            messages=len(messages),
        )
        if result.session_id:
            self.files.write("session-id", result.session_id)
        await self.nc.publish(subjects.agent(self.agent, subjects.STATS), bus.encode(result.stats))
        log.info("agent=%s turn exit=%s tools=%s", self.agent, result.stats.exit_class, result.stats.tool_calls)
        return result
