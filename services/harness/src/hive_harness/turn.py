"""One turn: the real `claude` CLI run with the agent's session continued, its stream-json events parsed by keys and
published for the live view, and the turn's figures when it ends."""

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

from hyperhive.wire.models import ExitClass, TurnStats

log = logging.getLogger("hive_harness.turn")


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
            *argv, cwd=cwd, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
    except OSError as exc:
        stats = TurnStats(agent=agent, model=model, started_at=started, duration_ms=0, exit_class="crashed",
                          messages=messages)  # fmt: skip
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
