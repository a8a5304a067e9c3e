"""An agent can write every file in its state dir, the harness's own bookkeeping included. What it plants there —
an option where a session id or a model name goes, a FIFO that would hang a reader, a link to a host file, garbage
where JSON goes — never stops its harness and never reaches the claude CLI's command line."""

from __future__ import annotations

import json
import os
from contextlib import AsyncExitStack
from pathlib import Path

from hivetest.claude import CLAUDE
from hivetest.harness import alice_and_bob, harness_for
from hivetest.hive import TestHive
from hivetest.messages_api import Text, serve_messages_api
from hyperhive.wire.models import AgentPolicy

from .conftest import Attacks

PLANTED = {
    "session-id": "--setting-sources=user,project,local",
    "hyperhive-model": "--dangerously-skip-permissions",
    "carried.json": '[{"not": "a message"',
    "harness-held.json": '["$JS.ACK.HIVE_INBOX.inbox-bob.1.1.1.1.0", 7, {"x": 1}]',
}


async def test_planted_state_files_never_stop_the_harness_or_reach_the_cli(
    hive: TestHive, tmp_path: Path, attacks: Attacks
) -> None:
    async with AsyncExitStack() as stack:
        policy = AgentPolicy(agent="alice", model="scripted-model", allowedRecipients=["bob"])  # type: ignore[call-arg]
        seed, state, bob = await alice_and_bob(stack, hive, tmp_path, policy)
        for name, text in PLANTED.items():
            (state / name).write_text(text)
        os.mkfifo(state / "hyperhive-paused")  # a reader that opened it plainly would wait forever
        (state / "notes-link").symlink_to("/etc/shadow")
        argv_file = tmp_path / "argv.json"
        recorder = ["/bin/sh", "-c", f'printf "%s\\n" "$@" > {argv_file}; exec {CLAUDE} "$@"', "claude"]
        with serve_messages_api() as api:
            harness = await harness_for(stack, hive, "alice", seed, state, api, claude=recorder)
            await bob.send("alice", "still there?")
            api.script([Text("Yes.")])
            result = await harness.run_once(wait=10)
        argv = argv_file.read_text().splitlines()
        attacks.record(
            "the planted files stopped the turn", succeeded=result is None or result.stats.exit_class != "ok"
        )
        for name, text in PLANTED.items():
            attacks.record(f"{name} reached the CLI's command line", succeeded=text in argv)
        attacks.record("a FIFO made the harness paused", succeeded=harness.paused)
        attacks.record("the planted model was used", succeeded=api.requests[0]["model"] != "scripted-model")
        attacks.record(
            "the wake prompt lost the real message", succeeded="still there?" not in json.dumps(api.requests[0])
        )
    attacks.none_succeeded()
