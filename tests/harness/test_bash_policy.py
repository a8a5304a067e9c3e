"""The harness's Bash allow-list: every part of a command line must be allowed, whatever wraps or hides it."""

import pytest

from hive_harness.bash_policy import check, commands
from hyperhive.wire.models import BashPolicy

POLICY = BashPolicy(allow=["git status", "git log", "pytest", "cat"], deny=["git push"], ask=["rm"])


@pytest.mark.parametrize(
    "line",
    [
        "git status",
        "git status --short",
        "git log --oneline | cat",
        "git status && pytest -q",
        "/usr/bin/git status",
        "FOO=1 pytest",
        "env FOO=1 pytest",
        "timeout 30 pytest",
        "sh -c 'git status; pytest'",
    ],
)
def test_allowed_commands_run(line: str) -> None:
    assert check(line, POLICY).action == "allow"


@pytest.mark.parametrize(
    "line",
    [
        "ls",  # read-only commands are not allowed just because they are harmless-looking
        "echo hi",
        "git status && curl x",
        "git status; curl x",
        "git status || curl x",
        "git log | curl -d @- x",
        "cat $(curl x)",
        "cat `curl x`",
        "cat <(curl x)",
        "(git status && curl x)",
        "env curl x",
        "env -i FOO=1 curl x",
        "sh -c 'curl x'",
        'bash -c "git status && curl x"',
        "xargs curl",
        "git log | xargs -I{} curl {}",
        "timeout -s KILL 5 curl x",
        "nice -n 5 curl x",
        "nohup curl x",
        "/usr/bin/curl x",
        "git status > /etc/passwd",
        "git push origin main",
        "git status && git push",
        "git statusx",
        "if true; then curl x; fi",
        "for i in 1; do curl x; done",
        "git status 'unterminated",
        "",
    ],
)
def test_anything_not_allowed_is_denied_with_a_reason(line: str) -> None:
    verdict = check(line, POLICY)
    assert verdict.action == "deny"
    assert verdict.reason


def test_ask_parts_go_to_the_operator_unless_something_is_denied() -> None:
    assert check("rm build.log", POLICY).action == "ask"
    assert check("git status && rm -rf build", POLICY).action == "ask"
    assert check("rm x && curl y", POLICY).action == "deny"


def test_redirections_are_writes_that_need_their_own_allowance() -> None:
    assert check("git status > out.txt", POLICY).action == "deny"
    writes = BashPolicy(allow=["git status", ">"])
    assert check("git status > out.txt", writes).action == "allow"
    assert check("git status 2>&1 | cat", BashPolicy(allow=["git status", "cat"])).action == "allow"


def test_every_part_is_found() -> None:
    assert commands("a && b | c; d $(e f)") == [["a"], ["b"], ["c"], ["e", "f"], ["d", "$(e f)"]]
