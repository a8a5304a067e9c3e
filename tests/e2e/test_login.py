"""`hivectl login` as a new operator meets it: `hivectl up` without a credential says how to add one and the manager
waits as needs-login, saying the same; a login reaches the running manager, whose next turn authenticates with it;
a second login (a subscription token) replaces it. The credential's path is traced: it reaches the claude CLI's
requests and nowhere else — no file beyond its two 0600/0640 copies, no log, no command line, no other process's
environment. Real `hivectl up`, sandboxes and CLI; the scripted Messages API stands in for Anthropic."""

from __future__ import annotations

import json
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from hivectl.layout import Layout
from hivetest.harness import States
from hivetest.messages_api import Text, ToolUse, serve_messages_api
from hivetest.up import hivectl, read_until, start_up
from hyperhive import bus, credential
from hyperhive.inbox import Inbox
from hyperhive.process import free_port
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import Empty, HarnessState
from hyperhive.wire.names import OPERATOR


def places_holding(secret: str, state: Path) -> Iterator[str]:
    """Every file under the state dir, command line and process environment that holds `secret`."""
    needle = secret.encode()
    for path in state.rglob("*"):
        if path.is_file() and not path.is_symlink() and needle in path.read_bytes():
            yield str(path)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes()
            environ = (proc / "environ").read_bytes()
        except OSError:
            continue  # gone meanwhile
        program = argv.split(b"\0")[0].decode(errors="replace")
        if needle in argv:
            yield f"the command line of {proc.name} ({program})"
        if needle in environ and not program.endswith(("claude", "claude.exe")):  # the CLI's is where it belongs
            yield f"the environment of {proc.name} ({program})"


def say(text: str) -> list[ToolUse | Text]:
    return [ToolUse("mcp__hyperhive__send", {"to": "operator", "body": text})]


async def test_a_login_reaches_the_running_manager_and_nothing_else(tmp_path: Path) -> None:
    state = tmp_path / "hive"
    layout = Layout(state)
    key = f"sk-ant-api03-{secrets.token_urlsafe(32)}"
    token = f"sk-ant-oat01-{secrets.token_urlsafe(32)}"
    with serve_messages_api() as api:
        model_env = {"ANTHROPIC_BASE_URL": api.url, "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_MAX_RETRIES": "0"}
        up = start_up(state, free_port(), free_port(), env={"HIVE_CLAUDE_ENV": json.dumps(model_env)})
        try:
            assert any("hivectl login" in line and "needs-login" in line for line in up.lines), up.lines
            nats_url = json.loads(layout.hive_file.read_text())["nats_url"]
            watcher = HiveSettings(nats_url=nats_url, nats_creds=layout.seed("dashboard"), state_dir=state)
            operator = watcher.model_copy(update={"nats_creds": layout.seed(OPERATOR)})
            async with (
                bus.connected(watcher, name="watch") as watch,
                bus.connected(operator, name="op", inbox_prefix=subjects.reply_prefix(OPERATOR)) as op,
            ):
                states = States(await watch.subscribe(subjects.agent_event("manager", "turn_state")))
                inbox = Inbox(op, OPERATOR)
                await inbox.open()
                # Without a credential the CLI is not logged in: the manager waits, and says what to do. Its state
                # now, then its changes from here on (it may have got there before we listened).
                await watch.flush()
                now: HarnessState | None = None
                try:
                    now = await bus.call(watch, subjects.harness("manager", "state"), Empty(), HarnessState, 30)
                except HiveError as exc:  # its harness not up yet: whatever it becomes, we hear
                    if exc.code != ErrorCode.UNAVAILABLE:
                        raise
                if now is None or now.state != "needs-login":
                    now = await states.until("needs-login", "hivectl login", timeout=60)
                assert "hivectl login" in now.note
                assert "claude setup-token" in now.note

                done = hivectl(state, "login", stdin=f"{key}\n")
                assert done.returncode == 0, done.stderr
                assert "Handed to the running hive's agents (manager)" in done.stdout
                assert stat.S_IMODE(layout.credential.stat().st_mode) == 0o600
                assert key not in done.stdout + done.stderr

                api.script(say("hello with the key"), [Text("Done.")])
                assert hivectl(state, "send", "manager", "are you there?").returncode == 0
                await read_until(inbox, "hello with the key")
                assert api.credentials[-1] == f"x-api-key: {key}"

                rotated = hivectl(state, "login", "--file", "-", stdin=token)
                assert rotated.returncode == 0, rotated.stderr
                assert "subscription token" in rotated.stdout
                api.script(say("hello with the token"), [Text("Done.")])
                assert hivectl(state, "send", "manager", "and now?").returncode == 0
                await read_until(inbox, "hello with the token")
                assert api.credentials[-1] == f"authorization: Bearer {token}"

            copies = {str(layout.credential), *(str(p) for p in state.rglob(credential.FILE))}
            assert [p for p in places_holding(key, state)] == []  # replaced everywhere
            assert set(places_holding(token, state)) <= copies
            assert len(copies) == 2  # the operator's file, and the manager's read-only copy at /run/hive
        finally:
            up.stop()
