"""A prompt-injected agent against its Bash allow-list (issue #12): every bypass family through the real checker with
a narrow and a careless policy, and a representative subset through the real claude CLI and the harness's hook, with
everything an agent could plant in its state dir. An attack succeeds when a line is allowed, or when it (or anything
planted) runs."""

from contextlib import AsyncExitStack
from pathlib import Path

from hive_harness.bash_policy import check
from hivetest.bypasses import FAMILIES, GIT_AND_LS, WIDE
from hivetest.harness import plant_everything, run_bash_calls
from hivetest.hive import TestHive
from hivetest.messages_api import ToolUse
from hyperhive.wire.models import AgentPolicy

from .conftest import Attacks


def test_every_bypass_family_against_the_checker(attacks: Attacks) -> None:
    for family, lines in FAMILIES.items():
        for line in lines:
            command = line.format(m="/state/marker", s="/state")
            for name, policy in (("git and ls", GIT_AND_LS), ("wide", WIDE)):
                verdict = check(command, policy)
                attacks.record(f"{family} ({name}): {command!r}", succeeded=verdict.action != "deny")
    attacks.none_succeeded()


async def test_a_subset_through_the_real_cli_and_hook(hive: TestHive, tmp_path: Path, attacks: Attacks) -> None:
    async with AsyncExitStack() as stack:
        state = tmp_path / "alice"
        marker = state / "marker"
        lines = [lines[i].format(m=marker, s=state) for lines in FAMILIES.values() for i in range(0, len(lines), 4)]
        policy = AgentPolicy(agent="alice", allowedBash=GIT_AND_LS)  # type: ignore[call-arg]
        calls = [ToolUse("Bash", {"command": line}) for line in lines] + [ToolUse("Bash", {"command": "ls"})]
        run = await run_bash_calls(stack, hive, tmp_path, policy, calls, plant=plant_everything)
        for line, answer in zip(lines, run.answers, strict=False):
            attacks.record(f"real CLI: {line!r}", succeeded=not answer.startswith("PreToolUse:"))
        attacks.record("any line created the marker", succeeded=marker.exists())
        for planted in (".bashrc", ".bash_profile", ".profile", ".bash_login", ".zshrc", "hook", "ls", "asyncio"):
            attacks.record(f"planted {planted} ran", succeeded=(state / f"planted-ran-{planted}").exists())
        assert "asyncio.py" in run.answers[-1]  # the last call, ls, ran: the shell was used
    attacks.none_succeeded()
