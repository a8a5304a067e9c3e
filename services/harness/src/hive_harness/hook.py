"""The PreToolUse hook the harness renders into the CLI's settings: every Bash call is checked against the agent's
`allowedBash` before it runs (the CLI would otherwise let read-only commands through on its own). `ask` parts
become a `tool_permission` approval; the hook waits for the operator, and an expired request is a deny.

The CLI runs `python -m hive_harness.hook` with the call on stdin and reads the decision from stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from hive_harness.bash_policy import Verdict, check
from hyperhive import bus
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.errors import HiveError
from hyperhive.wire.models import AgentPolicy, Approval, ApprovalRequest, WaitingNotice, WaitRequest

ASK_TTL_SECONDS = 300


def decision(verdict: Verdict) -> dict[str, Any]:
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": verdict.action,
            "permissionDecisionReason": verdict.reason,
        }
    }


async def ask_operator(agent: str, command: str, reason: str) -> Verdict:
    settings = HiveSettings()
    try:
        async with bus.connected(settings, name=f"{agent}-hook", inbox_prefix=subjects.reply_prefix(agent)) as nc:
            request = ApprovalRequest(agent=agent, tool="Bash", input={"command": command}, description=reason,
                                      ttl_seconds=ASK_TTL_SECONDS)  # fmt: skip
            asked = await bus.call(nc, subjects.agent(agent, "request.tool_permission"), request, Approval)
            # Tell our harness, so the dashboard shows the agent waiting rather than thinking.
            waiting = subjects.harness(agent, "waiting")
            await nc.publish(waiting, bus.encode(WaitingNotice(approval_id=asked.id)))
            decided = asked
            while decided.status == "pending":  # the long poll is capped below the approval's TTL
                decided = await bus.call(nc, subjects.agent(agent, subjects.DECISION),
                                         WaitRequest(id=asked.id, wait_seconds=180), Approval, timeout=190)  # fmt: skip
            await nc.publish(waiting, bus.encode(WaitingNotice(approval_id=None)))
    except HiveError as exc:
        return Verdict("deny", f"The operator could not be asked ({exc.message}); the command did not run.")
    if decided.status == "approved":
        return Verdict("allow", f"The operator approved request #{decided.id}.")
    return Verdict("deny", f"The operator did not approve request #{decided.id} ({decided.status}); it did not run.")


def main() -> None:
    call = json.load(sys.stdin)
    if call.get("tool_name") != "Bash":
        print(json.dumps({}))  # not ours to judge: the CLI's own rules apply
        return
    agent = os.environ["HIVE_AGENT"]
    policy_file = Path(os.environ.get("HIVE_STATE_DIR", "/state")) / "policy.json"
    policy = (
        AgentPolicy.model_validate_json(policy_file.read_text()) if policy_file.exists() else AgentPolicy(agent=agent)
    )
    command = str((call.get("tool_input") or {}).get("command", ""))
    verdict = check(command, policy.allowed_bash)
    if verdict.action == "ask":
        verdict = asyncio.run(ask_operator(agent, command, verdict.reason))
    print(json.dumps(decision(verdict)))


if __name__ == "__main__":
    main()
