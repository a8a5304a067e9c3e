"""The PreToolUse hook, answered inside the harness: for every tool call the CLI runs a thin client (curl, or
`python -I -S` with a raw socket where there is no curl) that POSTs the call to the harness's loopback server with
the tools' bearer token and prints the answer; the harness judges the commands of Bash and Monitor calls against the
policy it holds in memory (read from the spawner's read-only policy file at each turn).

Nothing the agent can write decides: the client is a program on /usr/bin (or the hive's Python in isolated mode, no
site), run in exec form (no shell), its arguments in the CLI's inline --settings; the check is the harness's own code.
(The CLI's `http` hook type would need no process at all, but costs ~32 ms a call against curl's ~11 ms.) The hook is
declared with `onFailure: "block"`, so a client or harness that does not answer blocks the call, and every answer is
a decision: whatever goes wrong while judging is a deny. `ask` parts become a `tool_permission` approval the harness
waits for (the agent in state `waiting`), and an expired request is a deny. Every deny is counted for the turn's stats
and published as a `bash_denied` event.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from starlette.types import Receive, Scope, Send

from hive_harness.bash_policy import Verdict, check
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.errors import HiveError
from hyperhive.wire.models import Approval, ApprovalRequest, BashPolicy, WaitRequest

log = logging.getLogger("hive_harness.hook")

ASK_TTL_SECONDS = 300
COMMAND_TOOLS = ("Bash", "Monitor")  # the CLI's tools that run a shell command
MAX_BODY = 1 << 20
CLIENT = """import socket, sys
host, port = sys.argv[1].split("/")[2].split(":")
auth, body = open(sys.argv[2], "rb").read().strip(), sys.stdin.buffer.read()
s = socket.create_connection((host, int(port)))
s.sendall(b"POST /hook HTTP/1.0\\r\\n" + auth + b"\\r\\nContent-Length: %d\\r\\n\\r\\n" % len(body) + body)
head, _, answer = b"".join(iter(lambda: s.recv(65536), b"")).partition(b"\\r\\n\\r\\n")
sys.exit(1) if b" 200 " not in head.split(b"\\r\\n")[0] + b" " else sys.stdout.buffer.write(answer)
"""


CURL = shutil.which("curl", path="/usr/bin:/bin")


def hook_settings(url: str, auth_file: Path, curl: str | None = CURL) -> dict[str, Any]:
    """The CLI's inline `--settings`: every tool call goes to the harness first; no answer blocks it. `auth_file`
    holds the `Authorization` header (0600: the token never appears in a command line other users can read)."""
    if curl:  # -q first: no .curlrc; no proxy from the environment
        args = ["-q", "-sS", "--fail", "--noproxy", "*", "--max-time", "600"]
        args += ["--data-binary", "@-", "-H", f"@{auth_file}", url]
        hook: dict[str, Any] = {"type": "command", "command": curl, "args": args}
    else:
        hook = {"type": "command", "command": sys.executable, "args": ["-I", "-S", "-c", CLIENT, url, str(auth_file)]}
    hook |= {"timeout": 600, "onFailure": "block"}
    return {"hooks": {"PreToolUse": [{"matcher": "*", "hooks": [hook]}]}}


def decision(verdict: Verdict) -> dict[str, Any]:
    return {
        "hookSpecificOutput": {
            "hookEventName": "PreToolUse",
            "permissionDecision": verdict.action,
            "permissionDecisionReason": verdict.reason,
        }
    }


class BashGate:
    """The harness's judge of command-running tool calls, for the policy of the current turn."""

    def __init__(
        self,
        agent: str,
        nc: Client,
        publish: Callable[[str, dict[str, Any]], Awaitable[None]],
        waiting: Callable[[int | None], Awaitable[None]],
    ) -> None:
        self.agent, self.nc, self.publish, self.waiting = agent, nc, publish, waiting
        self.policy = BashPolicy()
        self.problem = "no policy was loaded yet"
        self.denied = 0

    def use(self, policy: BashPolicy, problem: str = "") -> None:
        """The policy for the next turn; with a `problem` (the file could not be read) every command is denied."""
        self.policy, self.problem = policy, problem

    async def decide(self, body: bytes) -> dict[str, Any]:
        """The hook's answer to one call. Never raises: anything unexpected is a deny."""
        command: object = ""
        tool = "?"
        try:
            call = json.loads(body)
            tool = str(call.get("tool_name"))
            if tool not in COMMAND_TOOLS:
                return {}  # not ours to judge: the CLI's own permission rules apply
            command = (call.get("tool_input") or {}).get("command")
            if not isinstance(command, str):
                verdict = Verdict("deny", f"{tool} without a command is not allowed for this agent.")
            elif self.problem:
                verdict = Verdict("deny", f"Bash is off for this agent: its policy could not be read ({self.problem}).")
            else:
                verdict = check(command, self.policy)
                if verdict.action == "ask":
                    verdict = await self.ask_operator(command, verdict.reason)
        except Exception as exc:  # fail closed
            log.exception("agent=%s hook outcome=error error=%r", self.agent, exc)
            verdict = Verdict(
                "deny", f"The command did not run: the harness could not judge it ({type(exc).__name__})."
            )
        if verdict.action == "deny":
            self.denied += 1
            log.info("agent=%s bash_denied tool=%s command=%r reason=%r", self.agent, tool, command, verdict.reason)
            try:
                await self.publish("bash_denied", {"tool": tool, "command": str(command), "reason": verdict.reason})
            except Exception as exc:  # the deny stands even when the event cannot be published
                log.warning("agent=%s bash_denied event not published error=%r", self.agent, exc)
        return decision(verdict)

    async def ask_operator(self, command: str, reason: str) -> Verdict:
        """A `tool_permission` approval, waited for with the agent shown as waiting."""
        try:
            request = ApprovalRequest(
                agent=self.agent,
                tool="Bash",
                input={"command": command},
                description=reason,
                ttl_seconds=ASK_TTL_SECONDS,
            )
            asked = await bus.call(self.nc, subjects.agent(self.agent, "request.tool_permission"), request, Approval)
            await self.waiting(asked.id)
            decided = asked
            try:
                while decided.status == "pending":  # the long poll is capped below the approval's TTL
                    wait = WaitRequest(id=asked.id, wait_seconds=180)
                    decided = await bus.call(
                        self.nc, subjects.agent(self.agent, subjects.DECISION), wait, Approval, 190
                    )
            finally:
                await self.waiting(None)
        except HiveError as exc:
            return Verdict("deny", f"The operator could not be asked ({exc.message}); the command did not run.")
        if decided.status == "approved":
            return Verdict("allow", f"The operator approved request #{decided.id}.")
        return Verdict(
            "deny", f"The operator did not approve request #{decided.id} ({decided.status}); it did not run."
        )

    async def app(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The hook's HTTP endpoint (behind the tools' bearer check): JSON in, a decision out, always 200."""
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body") or len(body) > MAX_BODY:
                break
        answer = json.dumps(await self.decide(body)).encode()
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": answer})
