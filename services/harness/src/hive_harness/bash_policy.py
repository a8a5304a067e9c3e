"""The Bash allow-list, enforced by the harness rather than by the CLI's prefix matching (which lets read-only
commands through and has a history of bypasses).

A command line is parsed with a real shell parser (bashlex). Every simple command in it counts: both sides of
`&&`, `||`, `;` and `|`, subshells, command and process substitutions, the targets of output redirections, and the
commands that wrappers run (`env`, `sh -c`, `bash -c`, `xargs`, `timeout`, `nice`, `nohup`, `command`, `exec`,
`time`, `stdbuf`, `sudo`). Each must be allowed; one denied part denies the whole line, and one `ask` part asks.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any, Literal

import bashlex

from hyperhive.wire.models import BashPolicy

Action = Literal["allow", "deny", "ask"]
SHELLS = {"sh", "bash", "dash", "zsh", "ksh"}
SIMPLE_WRAPPERS = {"nohup", "command", "exec", "time", "builtin"}
WRITE = ">"  # the pattern that allows output redirections to files
MAX_DEPTH = 8


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str


class Unparsable(ValueError):
    pass


def _skip_options(argv: list[str], with_values: frozenset[str] = frozenset()) -> list[str]:
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
        i += 2 if argv[i] in with_values else 1
    if i < len(argv) and argv[i] == "--":
        i += 1
    return argv[i:]


def _unwrap(argv: list[str], depth: int) -> list[list[str]]:  # noqa: PLR0911 - a branch per wrapper
    """The commands a wrapper runs, as their own parts (the wrapper itself is transparent)."""
    if not argv:
        return []
    program = posixpath.basename(argv[0])
    rest = argv[1:]
    if program in SHELLS:
        if "-c" in rest[:3]:
            script = rest[rest.index("-c") + 1 : rest.index("-c") + 2]
            return commands(script[0], depth + 1) if script else [argv]
        return [argv]  # an interactive shell or a script file: judged as itself
    if program == "env":
        rest = _skip_options(rest, frozenset({"-u", "-C", "-S"}))
        while rest and "=" in rest[0] and not rest[0].startswith("="):
            rest = rest[1:]
        return _unwrap(rest, depth) if rest else [argv]
    if program == "xargs":
        inner = _skip_options(rest, frozenset({"-I", "-n", "-P", "-L", "-d", "-s", "-E", "-a", "-i"}))
        return _unwrap(inner, depth) if inner else [["echo"]]  # xargs with no command runs echo
    if program == "timeout":
        inner = _skip_options(rest, frozenset({"-s", "-k", "--signal", "--kill-after"}))[1:]
        return _unwrap(inner, depth) if inner else [argv]
    if program == "nice":
        inner = _skip_options(rest, frozenset({"-n"}))
        return _unwrap(inner, depth) if inner else [argv]
    if program in ("stdbuf", "sudo"):
        inner = _skip_options(rest, frozenset({"-o", "-e", "-i", "-u", "-g", "-C"}))
        return _unwrap(inner, depth) if inner else [argv]
    if program in SIMPLE_WRAPPERS:
        return _unwrap(rest, depth) if rest else [argv]
    return [argv]


def commands(line: str, depth: int = 0) -> list[list[str]]:
    """Every simple command a command line would run, as argv lists (`[">", target]` for an output redirect)."""
    if depth > MAX_DEPTH:
        raise Unparsable("commands nested too deep")
    try:
        trees = bashlex.parse(line)
    except (bashlex.errors.ParsingError, NotImplementedError, IndexError, AttributeError) as exc:
        raise Unparsable(str(exc)) from None
    found: list[list[str]] = []
    for tree in trees:
        _walk(tree, found, depth)
    return found


def _walk(node: Any, found: list[list[str]], depth: int) -> None:
    kind = getattr(node, "kind", "")
    if kind in ("commandsubstitution", "processsubstitution"):
        _walk(node.command, found, depth)
        return
    if kind == "command":
        argv: list[str] = []
        for part in node.parts:
            if part.kind == "word":
                argv.append(part.word)
            elif (
                part.kind == "redirect"
                and isinstance(part.type, str)
                and ">" in part.type
                and not (isinstance(part.output, int) or getattr(part.output, "word", "").startswith("&"))
            ):
                found.append([WRITE, getattr(part.output, "word", "")])
            for child in getattr(part, "parts", []) or []:
                _walk(child, found, depth)
            if part.kind == "redirect" and hasattr(part.output, "parts"):
                for child in part.output.parts:
                    _walk(child, found, depth)
        found.extend(_unwrap(argv, depth))
        return
    for attr in ("parts", "list"):
        for child in getattr(node, attr, None) or []:
            _walk(child, found, depth)
    if kind not in ("word",) and getattr(node, "command", None) is not None:
        _walk(node.command, found, depth)


def _matches(argv: list[str], pattern: str) -> bool:
    words = pattern.split()
    if not words or len(argv) < len(words):
        return False
    head = argv[0] if "/" in words[0] else posixpath.basename(argv[0])
    return [head, *argv[1 : len(words)]] == words


def check(line: str, policy: BashPolicy) -> Verdict:
    """allow, deny or ask for a whole command line, with a reason the model can read."""
    try:
        parts = commands(line)
    except Unparsable as exc:
        return Verdict("deny", f"The command could not be parsed safely ({exc}); write it more simply.")
    if not parts:
        return Verdict("deny", "There is no command to run.")
    asks: list[str] = []
    for argv in parts:
        shown = " ".join(argv)
        if any(_matches(argv, p) for p in policy.deny):
            return Verdict("deny", f"{shown!r} is denied by this agent's allowedBash.deny.")
        if any(_matches(argv, p) for p in policy.allow):
            continue
        if any(_matches(argv, p) for p in policy.ask):
            asks.append(shown)
            continue
        what = "Writing to a file with a redirection" if argv[0] == WRITE else repr(shown)
        return Verdict(
            "deny",
            f"{what} is not in this agent's allowedBash ({', '.join(policy.allow) or 'nothing is allowed'}); "
            "ask the manager to allow it.",
        )
    if asks:
        return Verdict("ask", f"The operator must approve: {'; '.join(asks)}.")
    return Verdict("allow", "")
