"""A strict reader for the small part of bash a checked command may use, so the checker sees exactly what bash runs.

A general shell parser (bashlex) does not look into everything bash expands, and a checker that trusts it fails
open wherever the two disagree. This reader is the other way round: it knows a small language completely and
refuses everything else (`Unsupported`, whose message says what to write instead). What it knows:

- simple commands of literal words: unquoted, `'single'`, `"double"` (no `$` or backquote inside), backslash escapes;
- `;`, newline, `&&`, `||`, `|`, and `( … )` subshells (nested at most `MAX_DEPTH` deep);
- redirections with a literal target: `<`, `>`, `>>`, `>|`, `&>`, `&>>`, `<>`, fd numbers, `N>&M`, `N>&-`;
- here-strings (`<<<word`), and here-documents whose body bash does not expand: a quoted delimiter (`<<'EOF'`), or
  an unquoted one over a body with no `$`, backquote or backslash;
- inside double quotes, exactly `$(cat <<'EOF'` … `EOF` … `)`: a literal here-document read back (the form the CLI's
  own system prompt teaches for commit messages), which is its body with trailing newlines removed;
- `#` comments.

Refused: every other `$` (variables, `${…}` in all its forms, `$(…)`, `$((…))`, `$'…'`), backquotes, globs
(`*`, `?`, `[`), brace expansion, a leading `~`, process substitution, `&`, `;;`, `((`, function definitions,
reserved words (`if`, `for`, `while`, `case`, `[[`, `!`, `{`, …), line continuations, NUL, and here-documents that
bash could read differently (a body line starting with the delimiter, no terminator).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

MAX_DEPTH = 16
META = " \t\n|&;()<>"


def words(text: str) -> frozenset[str]:
    """A set of names written as one string."""
    return frozenset(text.split())


RESERVED = words("if then else elif fi case esac for select while until do done in function time coproc { } ! [[ ]]")
ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
FD = re.compile(r"[0-9]+")
BRACES = re.compile(r"\{[^}]*(,|\.\.)")  # what bash could brace-expand: {a,b}, {1..3} (and unclosed ones)
HEREDOC_SUBST = re.compile(r"\$\(cat[ \t]+<<(-?)[ \t]*(?:'([A-Za-z_]\w*)'|\"([A-Za-z_]\w*)\")[ \t]*\n", re.ASCII)
REDIRECTS = ("<<<", "<<-", "&>>", "<<", ">>", ">|", "<>", "<&", ">&", "&>", "<", ">")
QUOTING = "'\"\\"


class Unsupported(ValueError):
    """A construct the reader does not model: the command is not run."""


@dataclass
class Redirect:
    op: str  # one of REDIRECTS
    fd: str  # the fd number written before the operator, "" for the default
    target: str  # the literal target (a here-document's body for `<<`)


@dataclass
class Command:
    """One simple command: its assignments (`NAME=value`), its words, its redirections."""

    assigns: list[str] = field(default_factory=list)
    argv: list[str] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)


@dataclass
class _Word:
    value: str
    raw: str
    unquoted: str  # the characters that stood outside quotes, in order (quoted ones as \0)


class _Reader:
    def __init__(self, line: str) -> None:
        if "\0" in line:
            raise Unsupported("a NUL character")
        self.s, self.i = line, 0
        self.heredocs: list[tuple[str, bool, Redirect]] = []  # delimiter, quoted, the redirect to fill in

    # ── words ────────────────────────────────────────────────────────────────

    def word(self) -> _Word:
        s, start = self.s, self.i
        value: list[str] = []
        unquoted: list[str] = []
        while self.i < len(s) and s[self.i] not in META:
            c = s[self.i]
            if c == "\\":
                if self.i + 1 >= len(s) or s[self.i + 1] == "\n":
                    raise Unsupported("a line continuation (a backslash at the end of a line)")
                value.append(s[self.i + 1])
                unquoted.append("\0")
                self.i += 2
            elif c == "'":
                end = s.find("'", self.i + 1)
                if end < 0:
                    raise Unsupported("an unterminated single quote")
                value.append(s[self.i + 1 : end])
                unquoted.append("\0")
                self.i = end + 1
            elif c == '"':
                self.i += 1
                value.append(self._double_quoted())
                unquoted.append("\0")
            elif c == "$":
                raise Unsupported(f"an expansion ({s[self.i : self.i + 12]!r}…): variables, $(…) and $((…))")
            elif c == "`":
                raise Unsupported("a backquoted command substitution")
            elif c in "*?[":
                raise Unsupported(f"an unquoted glob character {c!r} (quote it, or name the files)")
            elif c == "~" and self.i == start:
                raise Unsupported("a leading ~ (write the path out)")
            else:
                value.append(c)
                unquoted.append(c)
                self.i += 1
        bare = "".join(unquoted)
        if bare.startswith("{") or BRACES.search(bare):
            raise Unsupported("a brace expansion or { } group (quote the braces)")
        return _Word("".join(value), s[start : self.i], bare)

    def _double_quoted(self) -> str:
        s, out = self.s, list[str]()
        while True:
            if self.i >= len(s):
                raise Unsupported("an unterminated double quote")
            c = s[self.i]
            if c == '"':
                self.i += 1
                return "".join(out)
            if c == "\\" and self.i + 1 < len(s) and s[self.i + 1] in '$`"\\\n':
                if s[self.i + 1] == "\n":
                    raise Unsupported("a line continuation inside double quotes")
                out.append(s[self.i + 1])
                self.i += 2
            elif c == "$" and (m := HEREDOC_SUBST.match(s, self.i)):
                out.append(self._cat_heredoc(m))
            elif c in "$`":
                raise Unsupported(f"an expansion inside double quotes ({s[self.i : self.i + 12]!r}…)")
            else:
                out.append(c)
                self.i += 1

    def _cat_heredoc(self, m: re.Match[str]) -> str:
        """`$(cat <<'EOF'` … `EOF` `)`: the literal body, as command substitution returns it."""
        if self.heredocs:
            raise Unsupported("$(cat <<'EOF' …) on a line with another here-document")
        delimiter, strip = m.group(2) or m.group(3), m.group(1) == "-"
        self.i = m.end()
        body = self._heredoc_body(delimiter, strip)
        closing = re.compile(r"[ \t\n]*\)").match(self.s, self.i)
        if closing is None:
            raise Unsupported("$(cat <<'EOF' …) with more than the here-document inside")
        self.i = closing.end()
        return "\n".join(body).rstrip("\n")

    def _heredoc_body(self, delimiter: str, strip: bool) -> list[str]:
        lines: list[str] = []
        while True:
            if self.i >= len(self.s):
                raise Unsupported(f"a here-document with no {delimiter!r} line to end it")
            end = self.s.find("\n", self.i)
            end = len(self.s) if end < 0 else end
            line = self.s[self.i : end]
            self.i = min(end + 1, len(self.s))
            if strip:
                line = line.lstrip("\t")
            if line == delimiter:
                return lines
            if line.startswith(delimiter):
                raise Unsupported(f"a here-document line that starts with its delimiter {delimiter!r}")
            lines.append(line)

    # ── tokens ───────────────────────────────────────────────────────────────

    def _skip_blanks(self) -> None:
        s = self.s
        while self.i < len(s):
            if s[self.i] in " \t":
                self.i += 1
            elif s[self.i] == "#":  # a comment: bash only sees one where a word would start
                end = s.find("\n", self.i)
                self.i = len(s) if end < 0 else end
            else:
                return

    def _newline(self) -> None:
        """An unquoted newline: the bodies of the here-documents named on this line follow it."""
        self.i += 1
        for delimiter, quoted, redirect in self.heredocs:
            redirect.target = "\n".join(self._heredoc_body(delimiter, redirect.op == "<<-"))
            if not quoted and any(c in redirect.target for c in "$`\\"):
                raise Unsupported("a here-document with an unquoted delimiter whose body bash expands ($, `, \\)")
        self.heredocs = []

    def peek_op(self) -> str:
        """The operator at the cursor ("" for a word or the end)."""
        s, i = self.s, self.i
        for op in ("&&", "||", ";;", ";&", "|&", "((", "<(", ">(", *REDIRECTS, ";", "|", "&", "(", ")", "\n"):
            if s.startswith(op, i):
                return op
        return ""

    # ── grammar ──────────────────────────────────────────────────────────────

    def parse(self) -> list[Command]:
        commands = self.sequence(0)
        if self.i < len(self.s):
            raise Unsupported(f"an unexpected {self.peek_op() or self.s[self.i]!r}")
        if self.heredocs:
            raise Unsupported("a here-document with no body")
        return commands

    def sequence(self, depth: int) -> list[Command]:
        """Pipelines joined by ; && || and newlines, up to the end or a `)`."""
        found: list[Command] = []
        need = False  # after && || |, a command must follow
        while True:
            self._skip_blanks()
            op = self.peek_op()
            if op == "\n":
                self._newline()
                continue
            if self.i >= len(self.s) or op == ")":
                if need:
                    raise Unsupported("an operator with no command after it")
                return found
            found.extend(self.command(depth))
            self._skip_blanks()
            op = self.peek_op()
            if op in ("&&", "||", "|"):
                self.i += len(op)
                need = True
            elif op == ";":
                self.i += 1
                need = False
            elif op in ("\n", ")", ""):
                need = False
            else:
                raise Unsupported(f"{op!r} (run commands one after another with ; or &&)")

    def command(self, depth: int) -> list[Command]:
        op = self.peek_op()
        if op == "(":
            if depth >= MAX_DEPTH:
                raise Unsupported("subshells nested too deep")
            self.i += 1
            inner = self.sequence(depth + 1)
            if self.peek_op() != ")" or not inner:
                raise Unsupported("an unclosed or empty ( … )")
            self.i += 1
            after = self.simple(allow_words=False)
            return [*inner, after] if after.redirects else inner
        if op:
            raise Unsupported(f"{op!r} where a command should start")
        return [self.simple(allow_words=True)]

    def simple(self, *, allow_words: bool) -> Command:
        cmd = Command()
        while True:
            self._skip_blanks()
            op = self.peek_op()
            if not op and self.i < len(self.s):
                word = self.word()
                if self.peek_op() in REDIRECTS and FD.fullmatch(word.raw):
                    cmd.redirects.append(self.redirect(word.raw))
                    continue
                if not allow_words:
                    raise Unsupported(f"a word {word.raw!r} after a ( … ) group")
                if not cmd.argv and ASSIGNMENT.match(word.unquoted):
                    if "~" in word.unquoted:
                        raise Unsupported("a ~ in an assignment")
                    cmd.assigns.append(word.value)
                    continue
                if not cmd.argv and word.value in RESERVED:
                    raise Unsupported(f"the shell keyword {word.value!r} (write plain commands joined by && ; |)")
                cmd.argv.append(word.value)
            elif op in REDIRECTS:
                cmd.redirects.append(self.redirect(""))
            elif op in ("(", "((", "<(", ">(") and cmd.argv:
                raise Unsupported(f"{op!r} inside a command (a function definition or process substitution)")
            else:
                return cmd

    def redirect(self, fd: str) -> Redirect:
        op = self.peek_op()
        self.i += len(op)
        self._skip_blanks()
        if self.peek_op() or self.i >= len(self.s):
            raise Unsupported(f"a redirection {op!r} with no target")
        target = self.word()
        redirect = Redirect(op, fd, target.value)
        if op in ("<<", "<<-"):  # the body follows the end of the line
            self.heredocs.append((target.value, any(q in target.raw for q in QUOTING), redirect))
        return redirect


def parse(line: str) -> list[Command]:
    """Every simple command `line` would run, in order, or `Unsupported` naming what it cannot account for."""
    return _Reader(line).parse()
