"""The scripted model behind `hivectl up --demo`: a scenario that shows the whole loop without an Anthropic account.

The operator writes to the manager; the manager answers and asks to spawn `scout`; the operator approves; scout
starts, reports to the manager, and the manager tells the operator. Every answer is chosen from what the real
`claude` CLI sends (which tools the agent has, what woke it), so the agents, their harnesses and the hive are real:
only the model is scripted, and every message it writes says so.
"""

from __future__ import annotations

import json
from typing import Any

from hivetest.messages_api import Reply, Text, ToolUse

SCOUT = "scout"
TAG = "[scripted demo model]"


def _text_of(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    return "\n".join(str(block.get("text", "")) for block in content or [] if isinstance(block, dict))


def _tool_result(message: dict[str, Any]) -> bool:
    content = message.get("content")
    return isinstance(content, list) and any(
        isinstance(block, dict) and block.get("type") == "tool_result" for block in content
    )


def scenario(body: dict[str, Any]) -> Reply:
    """The next answer of the demo's model, from the request the CLI made."""
    messages = [m for m in body.get("messages") or [] if m.get("role") == "user"]
    if not messages:
        return [Text(f"{TAG} Nothing to do.")]
    if _tool_result(messages[-1]):
        return [Text(f"{TAG} Done.")]
    # Only the manager has the manager tools; the CLI may list MCP tools by name only (deferred), so look anywhere.
    manager = "mcp__hyperhive__request_spawn" in json.dumps(body.get("tools")) + json.dumps(body.get("messages"))
    return (_manager if manager else _helper)(_text_of(messages[-1]))


def _send(to: str, body: str) -> Reply:
    return [ToolUse("mcp__hyperhive__send", {"to": to, "body": f"{TAG} {body}"})]


def _manager(prompt: str) -> Reply:
    if "From operator" in prompt:
        hello = _send(
            "operator",
            f"Hello, operator: the manager here. I will ask you to spawn a helper agent, "
            f"{SCOUT!r}; approve it with `hivectl approvals` and `hivectl approve <id>`.",
        )
        spawn = ToolUse("mcp__hyperhive__request_spawn", {"name": SCOUT, "description": "a helper for the demo"})
        return [*hello, spawn]  # type: ignore[misc]
    if f"From {SCOUT}" in prompt:
        report = prompt.split(f"From {SCOUT}", 1)[1].split(":", 1)[-1].strip()
        return _send("operator", f"{SCOUT} is running and reported in: {json.dumps(report)}. The loop is complete.")
    return [Text(f"{TAG} Noted.")]


def _helper(prompt: str) -> Reply:
    if "You were started" in prompt or "You were restarted" in prompt:
        return _send("manager", f"{SCOUT} here: started in my own sandbox, ready to help.")
    return [Text(f"{TAG} Noted.")]
