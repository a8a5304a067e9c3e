"""The harness's Bash checker: every bypass family denied, the legitimate forms allowed, the rule grammar, and a
fuzz of generated lines whose allowed ones run in real bash only what the checker read."""

import subprocess
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hive_harness.bash_policy import WRITE, check, parts
from hivetest.bypasses import ALLOWED, FAMILIES, GIT_AND_LS, WIDE
from hyperhive.wire.models import BashPolicy

ATTEMPTS = [(family, line) for family, lines in FAMILIES.items() for line in lines]


@pytest.mark.parametrize(("family", "line"), ATTEMPTS, ids=[f"{f[:20]}-{i}" for i, (f, _) in enumerate(ATTEMPTS)])
@pytest.mark.parametrize("policy", [GIT_AND_LS, WIDE], ids=["git-and-ls", "wide"])
def test_every_bypass_is_denied_with_a_reason(family: str, line: str, policy: BashPolicy) -> None:
    verdict = check(line.format(m="/state/marker", s="/state"), policy)
    assert verdict.action == "deny", f"{family}: {line!r}"
    assert "allowed" in verdict.reason or "did not run" in verdict.reason or "no command" in verdict.reason


@pytest.mark.parametrize("line", ALLOWED)
def test_the_legitimate_forms_run(line: str) -> None:
    assert check(line, GIT_AND_LS) == check(line, GIT_AND_LS)  # no state between checks
    assert check(line, GIT_AND_LS).action == "allow", check(line, GIT_AND_LS).reason


def test_the_sentence_names_what_is_refused_and_what_is_allowed() -> None:
    policy = BashPolicy(allow=["git status", "git log *"])
    assert check("git -c core.pager=x log", policy).reason == (
        "`git -c` is not allowed for this agent (it can run other programs or reach another repo); "
        "allowed: git status, git log *."
    )
    assert "`curl x` is not allowed for this agent (allowed: git status, git log *)" in check("curl x", policy).reason
    assert "unquoted glob character '*'" in check("git *", policy).reason


def test_allow_patterns_match_the_whole_command() -> None:
    policy = BashPolicy(allow=["git status", "git log *", "nix build .#*", "git show --format=*", "CI=1 ls *"])
    assert check("git status", policy).action == "allow"
    assert check("git status --short", policy).action == "deny"  # exact: add `git status *` for options
    assert check("git log", policy).action == "allow"  # a last lone * matches no words too
    assert check("git log -p --stat", policy).action == "allow"
    assert check("git show --format=%H", policy).action == "allow"
    assert check("git show --stat", policy).action == "deny"
    assert check("nix build .#hello", policy).action == "allow"  # nix-bin is part of the machine's setup
    assert check("nix build .#a .#b", policy).action == "deny"


def test_a_glob_inside_a_pattern_word_stays_in_that_word() -> None:
    policy = BashPolicy(allow=["git log --since=*", "ls *"])
    assert check("git log --since=yesterday", policy).action == "allow"
    assert check("git log --since=yesterday -p", policy).action == "deny"
    assert check("CI=1 ls", BashPolicy(allow=["CI=1 ls *"])).action == "allow"
    assert check("CI=2 ls", BashPolicy(allow=["CI=1 ls *"])).action == "deny"
    assert check("CI=1 ls", policy).action == "deny"  # an assignment needs a rule that names it


def test_deny_and_ask_match_what_starts_with_them() -> None:
    policy = BashPolicy(allow=["git *"], deny=["git push"], ask=["rm"])
    assert check("git push origin main", policy).action == "deny"
    assert check("git status && git push", policy).action == "deny"
    assert check("rm build.log", policy).action == "ask"
    assert check("git status && rm -rf build", policy).action == "ask"
    assert check("rm x && curl y", policy).action == "deny"


def test_redirections_are_writes_that_need_their_own_allowance() -> None:
    assert check("git status > out.txt", BashPolicy(allow=["git *"])).action == "deny"
    assert check("git status > out.txt", BashPolicy(allow=["git *", ">"])).action == "allow"
    assert check("git status 2>&1 >/dev/null", BashPolicy(allow=["git *"])).action == "allow"


def test_programs_are_what_bash_runs_on_the_fixed_path() -> None:
    found = list(parts("/bin/ls -l && timeout 5 git status && sh -c 'ls' > out"))
    assert [p.argv for p in found] == [("/bin/ls", "-l"), ("git", "status"), (WRITE, "out"), ("ls",)]
    assert found[0].program == found[3].program  # /bin/ls and ls: the same file
    assert found[1].program.endswith("/git")
    assert next(iter(parts("cd /tmp"))).program == "builtin cd"


def test_no_policy_allows_nothing() -> None:
    assert check("ls", BashPolicy()).action == "deny"
    assert check("", GIT_AND_LS).action == "deny"


# ── the fuzz ────────────────────────────────────────────────────────────────

TOKENS = [
    "ls",
    "git",
    "status",
    "log",
    "-la",
    " ",
    " ",
    " ",
    "'a b'",
    '"c d"',
    "x",
    ";",
    "&&",
    "||",
    "|",
    "\n",
    "#",
    "$",
    "$(",
    "${",
    "`",
    "(",
    ")",
    "{",
    "}",
    ",",
    "..",
    "*",
    "?",
    "[",
    "~",
    "=",
    "PATH=",
    "'",
    '"',
    "\\",
    "<",
    ">",
    "2>&1",
    ">/dev/null",
    "<<",
    "<<'EOF'\n",
    "EOF",
    "&",
    "-c",
    "--upload-pack=x",
    "touch",
    "/state/m",
    "$(cat <<'EOF'\nz\nEOF\n)",
    "!",
    "if",
    "then",
    "fi",
    "\t",
    "-C",
]
WORDS = [
    "status",
    "log",
    "-la",
    "'a b'",
    '"c d"',
    "x",
    "--oneline",
    "@{u}",
    "HEAD~1",
    "2>&1",
    ">/dev/null",
    "#c",
    "'$(touch m)'",
    '"a\\"b"',
    "a\\ b",
    "<<<'s'",
    "<<'EOF'\nbody $x\nEOF\n",
    "$(cat <<'EOF'\nz\nEOF\n)",
]
COMMANDS = st.tuples(st.sampled_from(["ls", "git", "(ls)"]), st.lists(st.sampled_from(WORDS + TOKENS), max_size=4))
STRUCTURED = st.lists(COMMANDS.map(lambda c: " ".join([c[0], *c[1]])), min_size=1, max_size=4).flatmap(
    lambda commands: st.lists(
        st.sampled_from([" && ", " || ", "; ", " | ", "\n"]), min_size=len(commands) - 1, max_size=len(commands) - 1
    ).map(lambda ops: "".join(c + o for c, o in zip(commands, [*ops, ""], strict=True)))
)
LINES = STRUCTURED | st.lists(st.sampled_from(TOKENS), min_size=1, max_size=12).map("".join) | st.text(max_size=40)


def _stubbed_bash(tmp: Path) -> Path:
    """A PATH where ls and git only record their arguments (each ended by NUL, each run by \\1)."""
    stubs = tmp / "stubs"
    stubs.mkdir(exist_ok=True)
    for name in ("ls", "git"):
        stub = stubs / name
        # One record per run, appended in one write: the members of a pipeline run at once.
        record = f'{{ printf "%s\\0" {name} "$@"; printf "\\1"; }} > {tmp}/ran.$$\n/bin/cat {tmp}/ran.$$ >> {tmp}/ran\n'
        stub.write_text(f"#!/bin/bash\n{record}")
        stub.chmod(0o755)
    return stubs


def test_generated_lines_never_crash_and_allowed_ones_run_as_read(tmp_path: Path) -> None:
    stubs = _stubbed_bash(tmp_path)
    seen: Counter[str] = Counter()

    @settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(LINES)
    def one(line: str) -> None:
        verdict = check(line, GIT_AND_LS)
        seen[verdict.action] += 1
        assert verdict.action in ("allow", "deny")
        assert verdict.action == "allow" or verdict.reason
        if verdict.action != "allow":
            return
        ran = tmp_path / "ran"
        ran.unlink(missing_ok=True)
        subprocess.run(
            ["/bin/bash", "-c", line],
            env={"PATH": str(stubs)},
            cwd=tmp_path,
            capture_output=True,
            timeout=10,
            check=False,
            stdin=subprocess.DEVNULL,
        )
        runs = [r.split("\0")[:-1] for r in ran.read_text().split("\1")[:-1]] if ran.exists() else []
        seen["ran"] += bool(runs)
        expected = [[p.argv[0].rsplit("/", 1)[-1], *p.argv[1:]] for p in parts(line) if p.program != WRITE]
        # What ran is what the checker read (&& and || may skip some; a pipeline's members run in any order).
        assert not Counter(map(tuple, runs)) - Counter(map(tuple, expected)), (line, runs, expected)
        assert not (tmp_path / "m").exists()

    one()
    assert seen["allow"] >= 20, seen  # the fuzz reached both sides
    assert seen["deny"] >= 100, seen
    assert seen["ran"] >= 20, seen  # the stubs recorded what bash ran
