"""What an allowed program may still not do: the options and forms that make it run other code, or write the files
the shell and the CLI trust. These hold whatever allowedBash says, because an allow-list of `git *` is meant as
"use git", not "run anything git can be told to run". Each check returns a sentence naming what is refused.

Programs that only run other programs (xargs, sudo, interactive editors and pagers, …) are refused outright; `timeout`,
`nice`, `nohup` and `sh -c`/`bash -c` are judged by what they run (see `bash_policy`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Sequence

from hive_harness.shell import words

RUNS_COMMANDS = words(
    "xargs parallel sudo su doas pkexec chroot nsenter unshare setsid setpriv runuser flock watch script expect screen "
    "tmux strace ltrace gdb valgrind taskset ionice chrt stdbuf busybox ld.so env command builtin eval exec source "
    "less more most pg man info vi vim nvim view ex ed emacs nano pico joe mc zsh ksh mksh fish csh tcsh ssh-agent "
    "socat nc ncat telnet"
)
# Long options are refused whatever their abbreviation (GNU getopt and git accept unique prefixes).
GIT_GLOBAL_OK = words(
    "--no-pager --no-replace-objects --literal-pathspecs --glob-pathspecs --noglob-pathspecs --icase-pathspecs "
    "--no-optional-locks --no-advice --version --help --bare -P"
)
GIT_COMMANDS = words(
    "add am apply blame branch cat-file check-ignore check-attr checkout cherry cherry-pick clean clone commit "
    "count-objects describe diff diff-files diff-index diff-tree fetch for-each-ref format-patch fsck gc grep help "
    "init log ls-files ls-remote ls-tree merge merge-base mv name-rev pull push range-diff rebase reflog remote reset "
    "restore revert rev-list rev-parse rm shortlog show show-branch show-ref stash status switch tag version "
    "whatchanged"
)
GIT_DENIED_OPTIONS = words(
    "--upload-pack --receive-pack --exec --output --output-directory --ext-diff --textconv "
    "--open-files-in-pager --template --config --separate-git-dir --git-dir --work-tree --extcmd --tool "
    "--run --strategy-option --gpg-sign --signoff-command"
)
GIT_DENIED_SHORT = {  # subcommand → short options that run code or write outside the work tree
    "clone": "uc",
    "fetch": "u",
    "pull": "u",
    "ls-remote": "u",
    "archive": "o",
    "format-patch": "o",
    "rebase": "x",
    "grep": "O",
    "push": "",
}
OPTIONS: dict[str, tuple[Sequence[str], str]] = {  # program → (long options or single-dash words, short letters)
    "find": (("-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0", "-fprintf", "-fls"), ""),
    "tar": (
        (
            "--to-command",
            "--checkpoint-action",
            "--use-compress-program",
            "--info-script",
            "--new-volume-script",
            "--rsh-command",
            "--rmt-command",
            "--index-file",
            "--extract",
            "--get",
        ),
        "IFx",
    ),
    "rsync": (("--rsh", "--rsync-path", "--config", "--daemon"), "e"),
    "sed": (("--in-place", "--file", "--expression", "--line-length"), "iefl"),  # one script: the first operand
    "awk": (("--file", "--exec", "--include", "--load", "--source"), "fEil"),
    "python": ((), "c"),
    "perl": ((), "eEMmdx"),
    "ruby": (("--eval",), "erI"),
    "node": (("--eval", "--print", "--require", "--import", "--loader", "--experimental-loader"), "epr"),
    "curl": (
        (
            "--output",
            "--remote-name",
            "--config",
            "--output-dir",
            "--cookie-jar",
            "--dump-header",
            "--trace",
            "--trace-ascii",
            "--libcurl",
            "--stderr",
            "--upload-file",
        ),
        "oOKcDT",
    ),
    "wget": (
        ("--output-document", "--output-file", "--directory-prefix", "--execute", "--config", "--input-file"),
        "OoPei",
    ),
    "ssh": ((), "oFEST"),
    "scp": ((), "oFSJ"),
    "make": (("--eval",), "E"),
    "nix": (("--option", "--post-build-hook", "--builders", "--command", "--run", "--expr", "--file"), "cf"),
    "nix-shell": (("--run", "--command", "--option", "--expr"), "pE"),
    "sort": (("--compress-program", "--output"), "o"),
    "zip": (("--unzip-command",), "T"),
    "npx": ((), "c"),
    "npm": (("--call",), ""),
}
ALIASES = {"gawk": "awk", "mawk": "awk", "nawk": "awk", "nodejs": "node", "gsed": "sed", "gtar": "tar"}
NIX_RUNS = words("run develop shell repl fmt bundle profile registry daemon upgrade-nix")
AWK_RISKY = ("system", "|", ">", "getline", "@", "ENVIRON")
SED_SAFE = re.compile(  # commands of a sed script that read and print only: s///, y///, p, d, q, n, =, …
    r"(?:\s*(?:\d+|\$|/(?:[^/\\\n]|\\.)*/)?(?:\s*,\s*(?:\d+|\$|/(?:[^/\\\n]|\\.)*/))?\s*!?\s*"
    r"(?:s(?P<d>[^\s\\\n;])(?:(?!(?P=d))[^\\\n]|\\.)*(?P=d)(?:(?!(?P=d))[^\\\n]|\\.)*(?P=d)[gpiIm0-9]*"
    r"|y(?P<e>[^\s\\\n;])(?:(?!(?P=e))[^\\\n]|\\.)*(?P=e)(?:(?!(?P=e))[^\\\n]|\\.)*(?P=e)"
    r"|[pdqQnNgGhHxlPDz=]|[{}])?\s*[;\n]?)*"
)


def kind(program: str) -> str:
    """The program's family from its resolved path (`/usr/bin/python3.11` → python)."""
    name = program.rsplit("/", 1)[-1]
    if re.fullmatch(r"python[0-9.]*", name):
        return "python"
    if re.fullmatch(r"perl[0-9.]*", name):
        return "perl"
    return ALIASES.get(name, name)


def _long(arg: str, options: Collection[str]) -> str | None:
    """The refused option `arg` spells, in full, abbreviated, or with `=value` (single-dash words exactly); the
    first in sorted order when an abbreviation fits several, so the sentence is always the same."""
    name = arg.split("=", 1)[0]
    for option in sorted(options):
        if option.startswith("--") and name.startswith("--") and len(name) > 3 and option.startswith(name):
            return option
        if not option.startswith("--") and arg == option:
            return option
    return None


def _short(arg: str, letters: str) -> str | None:
    """A refused short option in `arg`, alone or in a cluster (`-xvf`)."""
    if arg.startswith("-") and not arg.startswith("--") and len(arg) > 1:
        for letter in letters:
            if letter in arg[1:]:
                return f"-{letter}"
    return None


def refused(program: str, args: Sequence[str]) -> str | None:
    """Why `program args…` may not run whatever the policy allows, or None."""
    family = kind(program)
    if family in RUNS_COMMANDS:
        return f"`{family}` runs other commands or takes over the terminal, which the checker cannot see"
    check = SPECIAL.get(family)
    if check is not None and (why := check(args)):
        return why
    long, short = OPTIONS.get(family, ((), ""))
    if family == "tar" and args and not args[0].startswith("-"):
        args = ["-" + args[0], *args[1:]]  # the old style: `tar xzf` is `tar -xzf`
    for arg in args:
        option = _long(arg, long) or _short(arg, short)
        if option:
            return f"`{family} {option}` is not allowed for this agent (it can run other programs or write anywhere)"
    return None


def _git(args: Sequence[str]) -> str | None:
    i = 0
    while i < len(args) and args[i].startswith("-"):
        if args[i] not in GIT_GLOBAL_OK:
            name = args[i].split("=", 1)[0]
            name = name[:2] if name.startswith(("-c", "-C")) and not name.startswith("--") else name
            return f"`git {name}` is not allowed for this agent (it can run other programs or reach another repo)"
        i += 1
    if i == len(args):
        return None
    sub, rest = args[i], args[i + 1 :]
    if sub not in GIT_COMMANDS:
        return f"`git {sub}` is not allowed for this agent (only git's own commands run, not aliases or helpers)"
    for arg in rest:
        option = _long(arg, GIT_DENIED_OPTIONS) or _short(arg, GIT_DENIED_SHORT.get(sub, ""))
        if option:
            return f"`git {sub} {option}` is not allowed for this agent (it can run other programs or write anywhere)"
    return None


def _awk(args: Sequence[str]) -> str | None:
    if any(word in arg for arg in args for word in AWK_RISKY):  # every argument: -F and -v take values
        return "an awk program with system(), getline, pipes or output redirection is not allowed for this agent"
    return None


def _sed(args: Sequence[str]) -> str | None:
    script = next((a for a in args if not a.startswith("-")), "")
    if SED_SAFE.fullmatch(script) is None:
        return "this sed script is not allowed for this agent (only s///, y/// and printing commands, no e or w)"
    return None


def _nix(args: Sequence[str]) -> str | None:
    sub = next((a for a in args if not a.startswith("-")), "")
    if sub in NIX_RUNS:
        return f"`nix {sub}` is not allowed for this agent (it runs what it builds)"
    return None


SPECIAL: dict[str, Callable[[Sequence[str]], str | None]] = {"git": _git, "awk": _awk, "sed": _sed, "nix": _nix}
