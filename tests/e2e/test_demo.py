"""`hivectl up --demo` as an operator would try it: the manager answers, asks to spawn scout, the operator approves,
scout starts in its own sandbox and reports to the manager, and the manager tells the operator. Then every hivectl
command against that hive, as text and as JSON, with its options anywhere, and bad input refused in one line. Real
processes, real sandboxes, the real claude CLI; only the model is scripted, and the hive says so."""

import asyncio
import contextlib
import io
import json
from pathlib import Path

from hivectl.cli import main as hivectl_main
from hivectl.layout import Layout
from hivetest.up import HIVECTL, hivectl, read_until
from hyperhive import bus
from hyperhive.inbox import Inbox
from hyperhive.process import Child, free_port
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.names import OPERATOR


async def test_the_demo_shows_the_whole_loop(spawner_state: Path) -> None:
    nats_port = free_port()
    ports = ["--nats-port", str(nats_port), "--postgres-port", str(free_port()), "--dashboard-port", str(free_port())]
    argv = [*HIVECTL, "up", "--demo", "--state-dir", str(spawner_state), *ports]
    up = Child("up", argv).start()
    try:
        up.wait_for(r"hyperhive is up", 120)
        up.wait_for(r"the agents' model is SCRIPTED", 5)
        layout = Layout(spawner_state)
        settings = HiveSettings(
            nats_url=json.loads(layout.hive_file.read_text())["nats_url"],
            nats_creds=layout.seed(OPERATOR),
            state_dir=spawner_state,
        )
        async with bus.connected(settings, name="demo-operator", inbox_prefix=subjects.reply_prefix(OPERATOR)) as nc:
            inbox = Inbox(nc, OPERATOR)
            await inbox.open()

            assert hivectl(spawner_state, "send", "manager", "hello").returncode == 0
            first = await read_until(inbox, "I will ask you to spawn a helper agent, 'scout'")
            assert all(b.startswith("[scripted demo model]") for b in first)

            [approval] = json.loads(hivectl(spawner_state, "--json", "approvals", "--status", "pending").stdout)[
                "approvals"
            ]
            assert (approval["type"], approval["agent"]) == ("spawn", "scout")
            assert hivectl(spawner_state, "approve", str(approval["id"])).returncode == 0
            await read_until(inbox, "scout is running and reported in")

            agents = json.loads(hivectl(spawner_state, "--json", "agents").stdout)["agents"]
            assert {(a["name"], a["state"]) for a in agents} == {("manager", "running"), ("scout", "running")}
            turn = json.loads(hivectl(spawner_state, "--json", "turn", "scout").stdout)
            assert turn["agent"] == "scout"
            assert turn["turns"] >= 1
            await every_command(spawner_state)
    finally:
        up.stop()


async def cli(state: Path, *argv: str) -> tuple[int, str, str]:
    """hivectl's own `main` (as `hivectl …` runs it, without a process per call): status, stdout, stderr."""

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = hivectl_main(list(argv))
            except SystemExit as exc:  # argparse's refusals
                status = int(exc.code or 0)
        return status, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(run)


# Each command with what its text shows. Those that only read also run as --json before and after the command;
# each that changes the hive is followed by another that runs as --json.
READS: list[tuple[list[str], str]] = [
    (["status"], "SERVICE"),
    (["inbox"], "inbox of operator"),
    (["inbox", "scout", "--limit", "5"], "inbox of scout"),
    (["depths"], "INBOX"),
    (["approvals"], "spawn"),
    (["approvals", "--status", "deployed"], "scout"),
    (["questions"], "ID"),
    (["agents"], "scout"),
    (["config", "scout"], "# scout @"),
    (["logs", "scout", "--lines", "5"], ""),
    (["turn", "scout"], "scout is"),
    (["model", "scout"], "scout is"),
]
CHANGES: list[tuple[list[str], str, list[str]]] = [  # (as text, what it shows, then as --json)
    (["send", "scout", "hi from the operator"], "sent ", ["send", "scout", "and again"]),
    (["model", "scout", "claude-opus-4-1"], "claude-opus-4-1", ["model", "scout", "--default"]),
    (["pause", "scout"], "Paused", ["resume", "scout"]),
    (["interrupt", "scout"], "scout is", ["turn", "scout"]),
    (["compact", "scout"], "", ["compact", "scout"]),  # between turns; or "in a turn" (conflict), in one line
    (["stop", "scout"], "scout is stopped", ["start", "scout"]),
    (["restart", "scout"], "scout is running", ["agents"]),
    (["tool", "add", "ci", "--send", "scout,operator"], "nats req hive.tool.ci.send", ["tool", "list"]),
    (["tool", "revoke", "ci"], "ci is revoked", ["tool", "list"]),
]
# Bad input: one line on stderr, status 2, before anything is asked.
BAD = [
    ["send", "../etc", "hi"],
    ["turn", "../x"],
    ["model", "scout", "--bad=option"],
    ["approve", "notanumber"],
    ["approve", str(2**63)],
    ["inbox", "scout", "--limit", "0"],
    ["nosuchcommand"],
    ["tool", "add", "../x"],
    ["tool", "add", "ci", "--send", "../etc"],
    ["tool", "add", "ci", "--public-key", "not-a-key"],
]


async def every_command(state: Path) -> None:
    where = ["--state-dir", str(state)]

    async def text(argv: list[str], shows: str) -> None:
        status, out, err = await cli(state, *argv, *where)
        assert (status, err) == (0, ""), (argv, out, err)
        assert shows in out, (argv, out)

    async def as_json(argv: list[str]) -> None:
        status, out, err = await cli(state, *argv)
        assert (status, err) == (0, ""), (argv, out, err)
        assert isinstance(json.loads(out), dict), (argv, out)

    for argv, shows in READS:
        await text(argv, shows)
        await as_json(["--json", *where, *argv])
        await as_json([*argv, "--json", *where])
    for argv, shows, then in CHANGES:
        if argv[0] == "compact":
            for placed in ([*argv, *where], [*then, *where, "--json"]):
                status, out, err = await cli(state, *placed)
                assert (status, err) == (0, "") or (status, err.count("\n"), "conflict" in err) == (1, 1, True), err
            continue
        await text(argv, shows)
        await as_json([*then, *where, "--json"])
    for argv in BAD:
        status, out, err = await cli(state, *argv, *where)
        assert status == 2, (argv, status, out, err)
        assert out == "", (argv, out)
        assert err.count("\n") == 1, (argv, err)
        assert err.startswith("hivectl"), (argv, err)
    # A refusal by the hive is status 1, in one line.
    status, _, err = await cli(state, "deny", "999999", *where)
    assert (status, err.count("\n")) == (1, 1), err
    assert "not_found" in err
