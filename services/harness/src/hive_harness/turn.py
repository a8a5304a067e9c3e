"""One turn: the real `claude` CLI run with the agent's session continued, its stream-json events parsed by keys and
published for the live view, and the turn's figures when it ends; and the CLI's flags and environment, which keep
everything the agent can write from configuring it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hive_harness.hook import hook_settings
from hive_harness.settings import HarnessSettings
from hive_harness.tools import ToolServer
from hyperhive import credential
from hyperhive.files import write_secret
from hyperhive.wire.models import AgentPolicy, ExitClass, TurnStats

log = logging.getLogger("hive_harness.turn")

# Config the agent's git cannot be told otherwise (assignments are refused by the Bash checker): repo config it could
# write must not run code (hooks, fsmonitor, an external diff, a pager or editor, credential helpers, ext:: remotes).
GIT_OVERRIDES = {
    "core.hooksPath": "/dev/null",
    "core.fsmonitor": "false",
    "core.pager": "cat",
    "core.editor": "false",
    "sequence.editor": "false",
    "diff.external": "",
    "credential.helper": "",
    "protocol.ext.allow": "never",
}
# What the CLI runs before a command from its config dir: regenerated every run, so nothing planted survives a turn.
CLI_RUN_DIRS = ("shell-snapshots", "session-env")

# What the CLI runs before a command from its config dir: regenerated every run, so nothing planted survives a turn.
CLI_RUN_DIRS = ("shell-snapshots", "session-env")


def cli_flags(state: Path, policy: AgentPolicy, tools: ToolServer) -> list[str]:
    """The rendered --mcp-config and the hook's header (0600: they hold the tools' token; written again every run,
    so nothing the agent adds to them lasts): our hyperhive server, whose name cannot be taken, and agent.nix's
    extra ones. The hook goes inline in --settings (no file), and --setting-sources "" keeps the CLI from loading
    the settings files the agent can write (its config dir's settings.json, the working dir's
    .claude/settings*.json)."""
    servers: dict[str, Any] = {
        name: {"type": "stdio", "command": s.command, "args": s.args, "env": s.env}
        for name, s in policy.mcp_servers.items()
        if name != "hyperhive"
    }
    servers["hyperhive"] = tools.entry()
    write_secret(state / "mcp.json", json.dumps({"mcpServers": servers}, indent=2).encode())
    write_secret(state / "hook-auth", f"Authorization: Bearer {tools.token}\n".encode())
    extra = [
        f"mcp__{name}__{tool}"
        for name, s in policy.mcp_servers.items()
        if name != "hyperhive"
        for tool in s.allowed_tools
    ]
    hook = json.dumps(hook_settings(tools.hook_url, state / "hook-auth"))
    flags = ["--mcp-config", str(state / "mcp.json"), "--strict-mcp-config"]
    flags += ["--allowedTools", ",".join(["mcp__hyperhive", *extra])]
    return [*flags, "--setting-sources", "", "--settings", hook]


def cli_env(settings: HarnessSettings) -> dict[str, str]:
    """The CLI's environment, which its Bash inherits: who the agent is, how it reaches the hive, the hive's
    credential when the spawner handed one over (it wins over `claude_env`'s); a HOME the agent cannot write (no
    shell startup file of its own is sourced), the CLI's sessions in /state/.claude, bash as the shell, git config
    that runs no code (see `GIT_OVERRIDES`)."""
    state = settings.state_dir
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(settings.cli_home),
        "CLAUDE_CONFIG_DIR": str(state / ".claude"),
        "XDG_CACHE_HOME": str(state / ".cache"),
        "HIVE_AGENT": settings.agent,
        "HIVE_NATS_URL": settings.nats_url,
        "HIVE_STATE_DIR": str(state),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_COUNT": str(len(GIT_OVERRIDES)),
    }
    for i, (key, value) in enumerate(GIT_OVERRIDES.items()):
        env |= {f"GIT_CONFIG_KEY_{i}": key, f"GIT_CONFIG_VALUE_{i}": value}
    if settings.nats_creds is not None:
        env["HIVE_NATS_CREDS"] = str(settings.nats_creds)
    env |= settings.claude_env
    if (token := credential.read(settings.credential_file)) is not None:  # read each turn: a new login reaches it
        env = {k: v for k, v in env.items() if k not in credential.CLI_VARIABLES} | credential.cli_env(token)
    for name in ("BASH_ENV", "ENV"):  # files a non-interactive shell would source
        env.pop(name, None)
    return env | {"SHELL": "/bin/bash"}


@dataclass
class TurnResult:
    stats: TurnStats
    result_text: str = ""
    session_id: str | None = None
    events: list[dict[str, Any]] = field(default_factory=list)


def exit_class(result: dict[str, Any] | None, returncode: int | None) -> ExitClass:
    """What kind of ending this was, from the CLI's result event (by keys, not by its subtype)."""
    if result is None:
        return "crashed"
    text = str(result.get("result", "")).lower()
    status = result.get("api_error_status")
    if not result.get("is_error"):
        return "ok"
    if "prompt is too long" in text:
        return "prompt_too_long"
    if status == 429 or "rate limit" in text:
        return "rate_limited"
    if status in (401, 403) or "api key" in text or "/login" in text:
        return "needs_login"
    return "api_error"


async def run_turn(
    *,
    agent: str,
    claude: Sequence[str],
    prompt: str,
    model: str,
    flags: Sequence[str],
    session: str | None,
    cwd: Path,
    env: Mapping[str, str],
    on_event: Callable[[dict[str, Any]], Awaitable[None]],
    messages: int = 0,
    cancel: asyncio.Event | None = None,
) -> TurnResult:
    """Run one turn to its end, continuing `session` when there is one (the result says which session it was).

    Setting `cancel` interrupts the turn: the CLI's whole process group (its MCP servers and hooks too) gets SIGTERM,
    then SIGKILL if it lingers; the turn ends as `cancelled`."""
    argv = [*claude, "-p", prompt, "--output-format", "stream-json", "--verbose", "--model", model, *flags]
    if session:
        argv += ["--resume", session]
    started, t = datetime.now(UTC), time.monotonic()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            cwd=cwd,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as exc:
        stats = TurnStats(
            agent=agent, model=model, started_at=started, duration_ms=0, exit_class="crashed", messages=messages
        )
        return TurnResult(stats, f"The claude CLI could not be started ({exc.strerror}: {argv[0]}).", session)
    interrupter = asyncio.create_task(_interrupt_on(cancel, proc)) if cancel is not None else None
    assert proc.stderr is not None
    stderr = asyncio.create_task(proc.stderr.read())  # read alongside, so a chatty CLI never blocks on a full pipe
    tools: Counter[str] = Counter()
    result: dict[str, Any] | None = None
    ran = model
    events: list[dict[str, Any]] = []
    assert proc.stdout is not None
    try:
        async for raw in proc.stdout:
            try:
                event = json.loads(raw)
            except ValueError:
                continue  # not an event (the CLI prints the odd plain line)
            events.append(event)
            if event.get("type") == "assistant":
                for block in (event.get("message") or {}).get("content") or []:
                    if isinstance(block, dict) and block.get("type") == "tool_use":
                        tools[str(block.get("name"))] += 1
            if event.get("type") == "result":
                result = event
            ran = _model_of(event) or ran
            if event.get("session_id") and not session:
                session = str(event["session_id"])
            await on_event(event)
        returncode = await proc.wait()
        errors = (await stderr).decode(errors="replace").strip()[-2000:]
    finally:
        if interrupter is not None:
            interrupter.cancel()
        if proc.returncode is None:  # we were cancelled ourselves (the harness is stopping): no orphaned CLI
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    cancelled = cancel is not None and cancel.is_set()
    usage = (result or {}).get("usage") or {}
    stats = TurnStats(
        agent=agent,
        model=ran,
        started_at=started,
        duration_ms=int((time.monotonic() - t) * 1000),
        exit_class="cancelled" if cancelled else exit_class(result, returncode),
        tool_calls=dict(tools),
        permission_denials=len((result or {}).get("permission_denials") or []),
        cost_usd=float((result or {}).get("total_cost_usd") or 0),
        input_tokens=int(usage.get("input_tokens") or 0),
        output_tokens=int(usage.get("output_tokens") or 0),
        messages=messages,
    )
    text = str(result.get("result", "")) if result else errors or f"The claude CLI exited with code {returncode}."
    return TurnResult(stats, text, session, events)


def _model_of(event: dict[str, Any]) -> str | None:
    """The model the CLI says it runs (its init event): it may rewrite the name it was given."""
    if event.get("type") == "system" and event.get("subtype") == "init" and event.get("model"):
        return str(event["model"])
    return None


async def _interrupt_on(cancel: asyncio.Event, proc: asyncio.subprocess.Process) -> None:
    await cancel.wait()
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            await asyncio.wait_for(proc.wait(), 5)
            return
        except TimeoutError:
            continue
