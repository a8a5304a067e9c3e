"""The Bash allow-list, enforced by the harness rather than by the CLI's prefix matching (which lets read-only
commands through and has a history of bypasses). It fails closed: what it cannot account for does not run.

A command line is read by `shell.parse`, which knows a small part of bash completely and refuses the rest (every
expansion, glob, keyword, …), so each simple command is a list of literal words. For each one:

- its program is what bash would run: a bash builtin by name (only `echo printf true false : pwd test cd` can be
  allowed, and only by a rule naming them), otherwise the file found on the fixed PATH `/usr/bin:/bin` (or an absolute
  path into it). `./ls`, `/state/ls` or a name not on that PATH are no program a rule can name;
- `timeout`, `nice`, `nohup` are judged by what they run, `sh -c '…'`/`bash -c '…'` by the script they run;
- `programs.refused` says what an allowed program still may not do (`git -c`, `find -exec`, `xargs`, …);
- assignments (`FOO=1 git …`) need a rule that names them, and never PATH, LD_*, GIT_*, BASH_ENV and the like;
- an output redirection to a file (not /dev/null) needs the `>` rule;
- then `deny` wins, then `allow`, then `ask`; anything else is denied.

Rules (allowedBash.allow/deny/ask) are patterns over the whole command: `[NAME=value …] program [word …]`, split like
shell words. A word is literal; `*` inside a word matches any characters in that one word (`.#*`, `--format=*`); a
lone `*` as the last word matches any further words, none included (`git log *`); a lone `*` elsewhere one word.
`allow` patterns match the whole command (`git status` is exactly that; `git status *` adds options); `deny` and `ask`
patterns match any command that starts with them (`rm` asks for every rm).
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from hive_harness import programs
from hive_harness.shell import Command, Unsupported, parse, words
from hyperhive.wire.models import BashPolicy

log = logging.getLogger("hive_harness.bash_policy")

Action = Literal["allow", "deny", "ask"]
FIXED_PATH = ("/usr/bin", "/bin")
WRITE = ">"  # the rule that allows output redirections to files
BUILTINS = words(
    ". : [ alias bg bind break builtin caller cd command compgen complete compopt continue declare dirs disown echo "
    "enable eval exec exit export false fc fg getopts hash help history jobs kill let local logout mapfile popd "
    "printf pushd pwd read readarray readonly return set shift shopt source suspend test times trap true type "
    "typeset ulimit umask unalias unset wait"
)
SAFE_BUILTINS = words("echo printf true false : pwd test cd")
NEVER_ASSIGNED = re.compile(
    r"PATH|LD_\w*|BASH\w*|ENV|SHELL\w*|PS4|IFS|HOME|CDPATH|GLOBIGNORE|PROMPT_COMMAND|TMPDIR|GIT_\w*|\w*PAGER|LESS\w*"
    r"|EDITOR|VISUAL|BROWSER|MANOPT|PYTHON\w*|PERL\w*|RUBY\w*|NODE_\w*|NPM_\w*|XDG_\w*|SSH_\w*|CLAUDE\w*|HIVE_\w*"
)
WRITES = (">", ">>", ">|", "&>", "&>>", "<>")
MAX_SHELL_DEPTH = 4


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str


@dataclass(frozen=True)
class Part:
    """One program the line runs, as the rules see it."""

    program: str  # "builtin cd", a resolved path, or WRITE
    argv: tuple[str, ...]  # as written (argv[0] as the model wrote it)
    assigns: tuple[str, ...] = ()

    @property
    def shown(self) -> str:
        return shlex.join([*self.assigns, *self.argv])


@dataclass(frozen=True)
class Rule:
    text: str
    program: str
    words: tuple[str, ...]
    assigns: tuple[str, ...]

    def matches(self, part: Part, *, prefix: bool) -> bool:
        if part.program != self.program or not _fit(self.assigns, part.assigns, prefix=False):
            return False
        return _fit(self.words, part.argv[1:], prefix=prefix)


@lru_cache(maxsize=1024)
def resolve(word: str, builtins: bool = True) -> str | None:
    """The program bash runs for the command word `word` (on the fixed PATH), or None when it is not one we name."""
    if "/" not in word:
        if builtins and word in BUILTINS:
            return f"builtin {word}"
        dirs: tuple[str, ...] = FIXED_PATH
    else:
        path = os.path.normpath(word)
        if not word.startswith("/") or os.path.dirname(path) not in FIXED_PATH or ".." in word.split("/"):
            return None
        dirs, word = (os.path.dirname(path),), os.path.basename(path)
    for directory in dirs:
        candidate = os.path.join(directory, word)
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return os.path.join(os.path.realpath(directory), word)  # the directory resolved, the name kept
    return None


def _word_fits(pattern: str, word: str) -> bool:
    if "*" not in pattern:
        return pattern == word
    return re.fullmatch(".*".join(map(re.escape, pattern.split("*"))), word, re.DOTALL) is not None


def _fit(patterns: tuple[str, ...], words: tuple[str, ...], *, prefix: bool) -> bool:
    for i, pattern in enumerate(patterns):
        if pattern == "*" and i == len(patterns) - 1:
            return True
        if i >= len(words) or not _word_fits(pattern, words[i]):
            return False
    return prefix or len(words) == len(patterns)


def compile_rule(text: str) -> Rule | None:
    """A rule of allowedBash, or None when it names no program we can find (it then never matches)."""
    if text.strip() == WRITE:
        return Rule(text, WRITE, ("*",), ())
    try:
        words = shlex.split(text)
    except ValueError:
        return None
    assigns = tuple(w for w in words if re.match(r"[A-Za-z_]\w*=", w))
    words = words[len(assigns) :] if tuple(words[: len(assigns)]) == assigns else []
    program = resolve(words[0]) if words else None
    if program is None:
        return None
    return Rule(text, program, tuple(words[1:]), assigns)


def parts(line: str, depth: int = 0) -> Iterator[Part]:
    """Every program `line` runs, wrappers seen through; `Unsupported` for what the checker cannot account for."""
    for command in parse(line):
        yield from _command_parts(command, depth)


def _command_parts(command: Command, depth: int) -> Iterator[Part]:
    for r in command.redirects:
        if r.op == ">&" and not re.fullmatch(r"[0-9]+-?|-", r.target):
            yield Part(WRITE, (WRITE, r.target))
        elif r.op == "<&" and not re.fullmatch(r"[0-9]+-?|-", r.target):
            raise Unsupported(f"a redirection <&{r.target}")
        elif r.op in WRITES and r.target != "/dev/null":
            yield Part(WRITE, (WRITE, r.target))
    if not command.argv:
        if command.assigns:
            raise Unsupported("an assignment that changes the shell for the commands after it")
        return
    yield from _program_parts(command.argv, tuple(command.assigns), depth, builtins=True)


def _program_parts(argv: list[str], assigns: tuple[str, ...], depth: int, *, builtins: bool) -> Iterator[Part]:
    for assign in assigns:
        name = assign.split("=", 1)[0]
        if NEVER_ASSIGNED.fullmatch(name):
            raise Unsupported(f"setting {name}, which changes what programs run or how")
    program = resolve(argv[0], builtins)
    inner = _wrapped(program, argv[1:])
    if inner is not None:
        if not inner:
            raise Unsupported(f"{argv[0]} with nothing to run")
        yield from _program_parts(inner, assigns, depth, builtins=False)
        return
    family = programs.kind(program or "")
    if family in ("sh", "bash", "dash") and program:
        if argv[1:2] != ["-c"] or len(argv) != 3:
            raise Unsupported(f"{argv[0]} running a script file or its input (only {argv[0]} -c '…' is read)")
        if depth >= MAX_SHELL_DEPTH:
            raise Unsupported("shells nested too deep")
        for command in parse(argv[2]):
            if family != "bash" and any(r.op in ("&>", "&>>", "<<<") for r in command.redirects):
                raise Unsupported(f"&> or <<< in a {argv[0]} script (they mean something else there)")
            yield from _command_parts(command, depth + 1)
        return
    yield Part(program or f"unknown {argv[0]}", tuple(argv), assigns)


def _wrapped(program: str | None, args: list[str]) -> list[str] | None:
    """The command `timeout`, `nice` or `nohup` runs (None when `program` is none of them)."""
    family = programs.kind(program or "")
    if family == "nohup":
        return args
    if family not in ("timeout", "nice"):
        return None
    flags = {"timeout": ("--preserve-status", "--foreground", "-v", "--verbose"), "nice": ()}[family]
    valued = {"timeout": ("-s", "--signal", "-k", "--kill-after"), "nice": ("-n", "--adjustment")}[family]
    i = 0
    while i < len(args) and args[i].startswith("-"):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if arg in flags or (family == "nice" and re.fullmatch(r"-[0-9]+", arg)):
            i += 1
        elif arg in valued:
            i += 2
        elif any(arg.startswith(v + "=") if v.startswith("--") else arg.startswith(v) for v in valued):
            i += 1
        else:
            raise Unsupported(f"the {family} option {arg}")
    return args[i + 1 :] if family == "timeout" else args[i:]


def _listed(patterns: list[str]) -> str:
    return ", ".join(patterns[:8]) + (", …" if len(patterns) > 8 else "") if patterns else "nothing"


def check(line: str, policy: BashPolicy) -> Verdict:
    """allow, deny or ask for a whole command line, with a sentence the model can act on. Never raises."""
    try:
        return _check(line, policy)
    except Unsupported as exc:
        return Verdict(
            "deny",
            f"The command did not run: this agent's Bash checker does not allow {exc}. Write plain commands with "
            "literal arguments, joined by &&, ||, ; or |.",
        )
    except Exception as exc:  # fail closed: whatever went wrong, the command does not run
        log.exception("bash_check outcome=error error=%r", exc)
        return Verdict("deny", f"The command did not run: the Bash checker failed on it ({type(exc).__name__}).")


def _check(line: str, policy: BashPolicy) -> Verdict:
    allow, deny, ask = ([r for r in map(compile_rule, rules) if r] for rules in (policy.allow, policy.deny, policy.ask))
    allowed = f"allowed: {_listed(policy.allow)}"
    found = list(parts(line))
    if not found:
        return Verdict("deny", "There is no command to run.")
    asks: list[str] = []
    for part in found:
        if any(r.matches(part, prefix=True) for r in deny):
            return Verdict("deny", f"`{part.shown}` is denied by this agent's allowedBash.deny ({allowed}).")
        why = _refused(part)
        if why:
            return Verdict("deny", f"{why}; {allowed}.")
        if any(r.matches(part, prefix=False) for r in allow):
            continue
        if any(r.matches(part, prefix=True) for r in ask):
            asks.append(part.shown)
            continue
        if part.program == WRITE:
            what = f"Writing to {part.argv[1]!r} with a redirection"
        elif part.program.startswith("unknown "):
            what = f"`{part.argv[0]}` is not a program on /usr/bin:/bin, so `{part.shown}`"
        else:
            what = f"`{part.shown}`"
        return Verdict("deny", f"{what} is not allowed for this agent ({allowed}); ask the manager to allow it.")
    if asks:
        return Verdict("ask", f"The operator must approve: {'; '.join(asks)}.")
    return Verdict("allow", "")


def _refused(part: Part) -> str | None:
    if part.program == WRITE:
        return None
    if part.program.startswith("builtin "):
        name = part.program.removeprefix("builtin ")
        if name not in SAFE_BUILTINS:
            return f"the shell builtin `{name}` is not allowed for this agent (it changes the shell itself)"
        if name == "printf" and any(a.startswith("-v") for a in part.argv[1:]):
            return "`printf -v` is not allowed for this agent (it sets a shell variable)"
        return None
    if part.program.startswith("unknown "):
        return None
    return programs.refused(part.program, part.argv[1:])
