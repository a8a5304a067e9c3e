"""hivectl's commands: each reads its arguments into a request (so bad input is refused before anything is asked)
and returns the call that sends it over NATS, whose answer is a wire model — or, for what it does on this host
(a process's log file, `login`), that answer itself. `render_<what>` turns the model into text, and `--json` prints
the model. Rendering reads the models' fields, never a dict's keys."""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from pydantic import BaseModel, Field

from hivectl.console import tail
from hivectl.layout import Layout
from hyperhive import bus, credential
from hyperhive.files import write_secret
from hyperhive.identity import mint_seed
from hyperhive.settings import HiveSettings, load
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import (
    AgentConfigReply,
    AgentRequest,
    AgentsReply,
    AgentStatus,
    AnswerRequest,
    Approval,
    ApprovalsReply,
    ApprovalsRequest,
    DecisionRequest,
    DepthsReply,
    Empty,
    HarnessReply,
    HarnessState,
    InboxReply,
    InboxRequest,
    LogsReply,
    LogsRequest,
    ModelRequest,
    OperatorSendRequest,
    PauseRequest,
    Question,
    QuestionRef,
    QuestionsReply,
    QuestionsRequest,
    SendReply,
    ToolGrant,
    ToolRequest,
    ToolsReply,
)
from hyperhive.wire.names import check_agent_ref

Call = Callable[[Client], Awaitable[BaseModel]]
PROCESSES = ("nats", "postgres", *subjects.SERVICES)
MAX_LOG_LINES = 2000  # as LogsRequest
Run = Callable[[argparse.Namespace], Call | BaseModel]


def state_dir_of(args: argparse.Namespace) -> Path:
    return args.state_dir or load(HiveSettings).state_dir


def asking(subject: str, request: BaseModel, reply: type[BaseModel], timeout: float = 5.0) -> Call:
    """The call that sends `request` (built, so checked, already) and reads its `reply`."""
    return lambda nc: bus.call(nc, subject, request, reply, timeout)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    )


def _at(when: datetime | None) -> str:
    return f"{when:%Y-%m-%d %H:%M:%S}" if when else ""


# ── status: NATS micro discovery ─────────────────────────────────────────────


class EndpointStats(BaseModel):
    name: str
    num_requests: int = 0
    num_errors: int = 0


class ServiceStats(BaseModel):
    """One service instance's `$SRV.STATS` answer (the fields hivectl shows)."""

    name: str
    id: str
    version: str
    started: str = ""
    endpoints: list[EndpointStats] = Field(default_factory=list)


class StatusReply(BaseModel):
    services: list[ServiceStats]


def status(args: argparse.Namespace) -> Call:
    async def call(nc: Client) -> StatusReply:
        found = [ServiceStats.model_validate(s) for s in await bus.discover(nc, "STATS")]
        return StatusReply(services=sorted(found, key=lambda s: (s.name, s.id)))

    return call


def render_status(reply: StatusReply) -> str:
    if not reply.services:
        return "No hyperhive service answers on this NATS server."
    rows = []
    for s in reply.services:
        requests, errors = sum(e.num_requests for e in s.endpoints), sum(e.num_errors for e in s.endpoints)
        rows.append([s.name, s.version, s.id, str(len(s.endpoints)), str(requests), str(errors), s.started])
    return table(rows, ["SERVICE", "VERSION", "ID", "ENDPOINTS", "REQUESTS", "ERRORS", "STARTED"])


# ── broker ───────────────────────────────────────────────────────────────────


def _broker(verb: str) -> str:
    return subjects.operator(subjects.BROKER, verb)


def send(args: argparse.Namespace) -> Call:
    return asking(_broker("send"), OperatorSendRequest(to=args.to, body=args.body), SendReply)


def render_send(reply: SendReply) -> str:
    return f"sent {reply.id} to {', '.join(reply.recipients)}"


def inbox(args: argparse.Namespace) -> Call:
    return asking(_broker("inbox"), InboxRequest(owner=args.owner, limit=args.limit), InboxReply)


def render_inbox(reply: InboxReply) -> str:
    rows = [
        [str(e.message.seq), _at(e.message.sent_at), e.message.sender, e.state, e.message.body.replace("\n", " ")[:80]]
        for e in reply.entries
    ]
    return f"inbox of {reply.owner}: {reply.pending} pending\n" + table(rows, ["SEQ", "SENT", "FROM", "STATE", "BODY"])


def depths(args: argparse.Namespace) -> Call:
    return asking(_broker("depths"), Empty(), DepthsReply)


def render_depths(reply: DepthsReply) -> str:
    return table([[k, str(v)] for k, v in sorted(reply.depths.items())], ["INBOX", "UNACKED"])


# ── approver ─────────────────────────────────────────────────────────────────


def _approver(verb: str) -> str:
    return subjects.operator(subjects.APPROVER, verb)


def approvals(args: argparse.Namespace) -> Call:
    request = ApprovalsRequest(status=args.status, limit=args.limit)
    return asking(_approver("approvals"), request, ApprovalsReply)


def render_approvals(reply: ApprovalsReply) -> str:
    rows = [
        [str(a.id), a.type, a.agent, a.status, a.requested_by, a.tool or a.commit_ref or "", a.description[:50]]
        for a in reply.approvals
    ]
    return table(rows, ["ID", "KIND", "AGENT", "STATUS", "BY", "REF/TOOL", "DESCRIPTION"])


def decide(args: argparse.Namespace) -> Call:
    return asking(_approver(args.command), DecisionRequest(id=args.id, note=args.note), Approval)


def render_decision(a: Approval) -> str:
    return f"approval #{a.id} ({a.type} for {a.agent}) is {a.status}"


def questions(args: argparse.Namespace) -> Call:
    request = QuestionsRequest(status=args.status, limit=args.limit)
    return asking(_approver("questions"), request, QuestionsReply)


def render_questions(reply: QuestionsReply) -> str:
    rows = [
        [str(q.id), q.asker, q.status, q.question[:60], " | ".join(q.options), q.answer or ""] for q in reply.questions
    ]
    return table(rows, ["ID", "ASKER", "STATUS", "QUESTION", "OPTIONS", "ANSWER"])


def answer(args: argparse.Namespace) -> Call:
    request = AnswerRequest(id=args.id, choices=args.choice or [], text=args.text)
    return asking(_approver("answer"), request, Question)


def cancel(args: argparse.Namespace) -> Call:
    return asking(_approver("cancel"), QuestionRef(id=args.id), Question)


def render_question(q: Question) -> str:
    return f"question #{q.id} of {q.asker} is {q.status}" + (f": {q.answer}" if q.answer else "")


# ── spawner ──────────────────────────────────────────────────────────────────


def _spawner(verb: str) -> str:
    return subjects.operator(subjects.SPAWNER, verb)


def agents(args: argparse.Namespace) -> Call:
    return asking(_spawner("agents"), Empty(), AgentsReply)


def render_agents(reply: AgentsReply) -> str:
    rows = [[a.name, a.state, (a.applied or "")[:12], str(a.uid or "")] for a in reply.agents]
    return table(rows, ["AGENT", "STATE", "APPLIED", "UID"])


def logs(args: argparse.Namespace) -> Call | LogsReply:
    if args.service is not None:  # read here, from the files: the hive may well be down
        return service_log(state_dir_of(args), args)
    if args.agent is None:
        raise HiveError(ErrorCode.INVALID_REQUEST, "Name an agent, or a process of the local hive with --service.")
    return asking(_spawner("logs"), LogsRequest(agent=args.agent, lines=args.lines), LogsReply)


def service_log(state_dir: Path, args: argparse.Namespace) -> LogsReply:
    """The last lines a process of the local hive printed (nats, postgres, broker, …), from its log file."""
    if args.service not in PROCESSES:
        raise HiveError(ErrorCode.INVALID_NAME, f"There is no process {args.service!r}; one of {', '.join(PROCESSES)}.")
    if not 1 <= args.lines <= MAX_LOG_LINES:
        raise HiveError(ErrorCode.INVALID_REQUEST, f"--lines must be 1-{MAX_LOG_LINES}, not {args.lines}.")
    return LogsReply(agent=args.service, lines=tail(Layout(state_dir).logs / f"{args.service}.log", args.lines))


def render_logs(reply: LogsReply) -> str:
    return "\n".join(reply.lines)


class Login(BaseModel):
    """What `hivectl login` did: where the credential is kept, and which agents the running hive handed it to."""

    stored: Path
    kind: str
    hive_running: bool = False
    agents: list[str] = Field(default_factory=list)


def login(args: argparse.Namespace) -> Call | Login:
    """Store the hive's Anthropic credential 0600 in the state dir, then have a running hive's spawner hand it to
    every agent. It is read from --file (`-`: stdin), from stdin when that is not a terminal, else from a prompt that
    does not echo: never from an argument, which every process listing would show."""
    token = credential.check(_secret_input(args.file))
    layout = Layout(state_dir_of(args))
    write_secret(layout.credential, f"{token}\n".encode())
    stored = Login(stored=layout.credential, kind=credential.kind(token))
    if not layout.hive_file.exists():
        return stored

    async def hand_over(nc: Client) -> Login:
        reply = await bus.call(nc, _spawner("credential"), Empty(), AgentsReply, 30)
        return stored.model_copy(update={"hive_running": True, "agents": [a.name for a in reply.agents]})

    return hand_over


def _secret_input(file: str | None) -> str:
    if file == "-" or (file is None and not sys.stdin.isatty()):
        return sys.stdin.read()
    if file is None:
        return getpass.getpass("Anthropic API key, or the token `claude setup-token` printed: ")
    try:
        return Path(file).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise HiveError(ErrorCode.INVALID_REQUEST, f"Cannot read the credential from {file}: {exc}.") from None


class PasswordSet(BaseModel):
    """What `hivectl passwd` did."""

    account: str
    sessions_ended: bool = True


def passwd(args: argparse.Namespace) -> PasswordSet:
    """Set the operator's dashboard password (argon2, 0600 in the state dir); every open session ends. Read like a
    credential: a prompt asked twice, or --file / stdin — never an argument."""
    try:
        from hive_dashboard import password  # noqa: PLC0415 - the dashboard's, installed with it
    except ImportError:
        raise HiveError(ErrorCode.UNAVAILABLE, "The dashboard is not installed here.") from None
    if args.file is None and sys.stdin.isatty():
        plain = getpass.getpass("New dashboard password: ")
        if getpass.getpass("Again: ") != plain:
            raise HiveError(ErrorCode.INVALID_REQUEST, "The two passwords differ; nothing was changed.")
    else:
        plain = _secret_input(args.file).rstrip("\n")
    try:
        password.set_password(state_dir_of(args), plain)
    except password.PasswordError as exc:
        raise HiveError(ErrorCode.INVALID_REQUEST, str(exc)) from None
    return PasswordSet(account=password.ACCOUNT)


def render_passwd(done: PasswordSet) -> str:
    return f"The {done.account}'s dashboard password is changed; every open session has ended."


def render_login(done: Login) -> str:
    lines = [f"Stored the {done.kind} in {done.stored} (mode 0600)."]
    if not done.hive_running:
        lines.append("The hive is not running: its agents get it when it starts (`hivectl up`).")
    else:
        agents = ", ".join(done.agents) or "none yet"
        lines.append(f"Handed to the running hive's agents ({agents}); each uses it from its next turn.")
    return "\n".join(lines)


class ToolAdded(BaseModel):
    """What `hivectl tool add` did: the grant the spawner holds, and where the tool's key is (when hivectl made it)."""

    tool: ToolGrant
    seed_file: Path | None


def tool_add(args: argparse.Namespace) -> Call:
    """Admit a tool. Its key is made here, 0600 (kept when it exists, so adding again changes only the grant), and
    only its public half is sent: no secret crosses the bus. `--public-key` admits a key made elsewhere."""
    name = check_agent_ref(args.name)
    send = [r.strip() for r in args.send.split(",") if r.strip()] if args.send else []
    seed: Path | None = None
    public_key = args.public_key
    if public_key is None:
        seed = args.seed_file or Layout(state_dir_of(args)).state_dir / "tools" / f"{name}.nk"
        public_key = mint_seed(seed)
    grant = ToolGrant(name=name, public_key=public_key, send=send, broadcast=args.broadcast, ask=args.ask)

    async def add(nc: Client) -> ToolAdded:
        return ToolAdded(tool=await bus.call(nc, _spawner("tool-add"), grant, ToolGrant, 30), seed_file=seed)

    return add


def render_tool_added(done: ToolAdded) -> str:
    t = done.tool
    may = [f"send to {', '.join(t.send)}"] if t.send else []
    may += ["send to everyone ('*')"] if t.broadcast else []
    may += ["ask the operator questions"] if t.ask else []
    lines = [f"Tool {t.name} is admitted: it may {'; '.join(may) or 'do nothing yet (--send, --broadcast, --ask)'}."]
    if done.seed_file is not None:
        lines.append(f"Its NATS key: {done.seed_file} (0600; give it to the tool, and to nobody else).")
        example = {"to": t.send[0] if t.send else "alice", "body": "build 812 failed"}
        lines.append(f"Try: nats req {subjects.tool(t.name, 'send')} '{json.dumps(example)}' --nkey {done.seed_file}")
    return "\n".join(lines)


def tool_list(args: argparse.Namespace) -> Call:
    return asking(_spawner("tools"), Empty(), ToolsReply)


def render_tools(reply: ToolsReply) -> str:
    rows = [[t.name, ",".join(t.send), "yes" if t.broadcast else "", "yes" if t.ask else ""] for t in reply.tools]
    return table(rows, ["TOOL", "SEND", "BROADCAST", "ASK"])


def tool_revoke(args: argparse.Namespace) -> Call:
    request = ToolRequest(name=args.name)
    seed = Layout(state_dir_of(args)).state_dir / "tools" / f"{request.name}.nk"

    async def revoke(nc: Client) -> ToolGrant:
        grant = await bus.call(nc, _spawner("tool-revoke"), request, ToolGrant, 30)
        seed.unlink(missing_ok=True)  # a key nobody will accept again
        return grant

    return revoke


def render_tool_revoked(grant: ToolGrant) -> str:
    return f"Tool {grant.name} is revoked: its connections are closed, and its key is refused."


def lifecycle(args: argparse.Namespace) -> Call:
    return asking(_spawner(args.command), AgentRequest(agent=args.agent), AgentStatus, timeout=30)


def render_status_of(a: AgentStatus) -> str:
    return f"{a.name} is {a.state}"


def agent_config(args: argparse.Namespace) -> Call:
    return asking(_spawner("agent-config"), AgentRequest(agent=args.agent), AgentConfigReply)


def render_config(reply: AgentConfigReply) -> str:
    return f"# {reply.agent} @ {reply.sha[:12]}\n{reply.agent_nix}"


# ── an agent's harness ───────────────────────────────────────────────────────


def harness(args: argparse.Namespace) -> Call:
    """An agent's harness plane: `turn` (its state), `interrupt`, `compact`, `pause`, `resume`, `model`."""
    subject = partial(subjects.harness, AgentRequest(agent=args.agent).agent)
    if args.command == "turn" or (args.command == "model" and args.model is None and not args.default):
        return asking(subject("state"), Empty(), HarnessState)
    request: BaseModel = Empty()
    verb = {"interrupt": "cancel", "resume": "pause"}.get(args.command, args.command)
    if args.command in ("pause", "resume"):
        request = PauseRequest(paused=args.command == "pause")
    elif args.command == "model":
        request = ModelRequest(model=None if args.default else args.model)
    return asking(subject(verb), request, HarnessReply, timeout=600)


def render_harness(reply: HarnessState | HarnessReply) -> str:
    state = reply.state if isinstance(reply, HarnessReply) else reply
    line = f"{state.agent} is {state.state} (model {state.model}, {state.turns} turns)"
    line += f": {state.note}" if state.note else ""
    return f"{reply.done}\n{line}" if isinstance(reply, HarnessReply) else line


# ── the command line ─────────────────────────────────────────────────────────


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Every command, each taking the common options (`--json`, `--state-dir`) wherever they are written."""

    def command(name: str, help: str, run: Run, render: Callable[[Any], str]) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(name, help=help, parents=[common])
        p.set_defaults(run=run, render=render)
        return p

    command("status", "list the running services, with request and error counts", status, render_status)
    p = command("send", "send a message to an agent (or '*' for every agent) as the operator", send, render_send)
    p.add_argument("to")
    p.add_argument("body")
    p = command("inbox", "recent messages of an inbox (default: the operator's)", inbox, render_inbox)
    p.add_argument("owner", nargs="?", default="operator")
    p.add_argument("--limit", type=int, default=20)
    command("depths", "unacknowledged messages per inbox", depths, render_depths)

    p = command("approvals", "list approvals, newest first", approvals, render_approvals)
    p.add_argument("--status", default=None, help="pending, applying, deployed, denied, …")
    p.add_argument("--limit", type=int, default=30)
    for verb in ("approve", "deny"):
        p = command(verb, f"{verb} an approval", decide, render_decision)
        p.add_argument("id", type=int)
        p.add_argument("--note", default=None)
    p = command("questions", "list the agents' questions", questions, render_questions)
    p.add_argument("--status", default=None, help="pending, answered, expired, cancelled")
    p.add_argument("--limit", type=int, default=30)
    p = command("answer", "answer a question: free text, or --choice (repeat it for several)", answer, render_question)
    p.add_argument("id", type=int)
    p.add_argument("text", nargs="?", default=None)
    p.add_argument("--choice", action="append")
    p = command("cancel", "withdraw a question (the asker is told [cancelled])", cancel, render_question)
    p.add_argument("id", type=int)

    p = command(
        "login",
        "give the hive its Anthropic credential: an API key or a `claude setup-token` token",
        login,
        render_login,
    )
    p.add_argument("--file", default=None, help="read it from this file ('-': stdin); default: stdin, else a prompt")
    p = command("passwd", "set the operator's dashboard password (every open session ends)", passwd, render_passwd)
    p.add_argument("--file", default=None, help="read it from this file ('-': stdin); default: a prompt, asked twice")
    _register_tools(sub, common)
    command("agents", "the hive's agents and their states", agents, render_agents)
    command("config", "an agent's applied agent.nix", agent_config, render_config).add_argument("agent")
    p = command("logs", "the last lines of an agent's journal, or with --service of a process", logs, render_logs)
    p.add_argument("agent", nargs="?", default=None)
    p.add_argument("--service", default=None, help=f"a process of the local hive: {', '.join(PROCESSES)}")
    p.add_argument("--lines", type=int, default=100)
    for verb, what in LIFECYCLE.items():
        command(verb, what, lifecycle, render_status_of).add_argument("agent")
    for verb, what in HARNESS.items():
        command(verb, what, harness, render_harness).add_argument("agent")
    what = "show or set the model an agent's next turns run with (the operator's /model)"
    p = command("model", what, harness, render_harness)
    p.add_argument("agent")
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--default", action="store_true", help="back to the model in the agent's agent.nix")


def _register_tools(sub: Any, common: argparse.ArgumentParser) -> None:
    """`hivectl tool add|list|revoke`."""
    tool = sub.add_parser("tool", help="admit, list and revoke tools (scripts that publish into the hive)")
    tools = tool.add_subparsers(dest="tool_command", required=True, metavar="TOOL_COMMAND", parser_class=type(tool))
    p = tools.add_parser("add", help="admit a tool, or change what it may do", parents=[common])
    p.set_defaults(run=tool_add, render=render_tool_added)
    p.add_argument("name")
    p.add_argument("--send", default="", help="whom it may send to: agents, manager, operator (comma-separated)")
    p.add_argument("--broadcast", action="store_true", help="it may send to every agent ('*')")
    p.add_argument("--ask", action="store_true", help="it may ask the operator questions, and read the answers")
    p.add_argument("--seed-file", type=Path, default=None, help="where to keep its key (default: <state>/tools/)")
    p.add_argument("--public-key", default=None, help="admit a key made elsewhere (nk -gen user); no seed is written")
    tools.add_parser("list", help="the admitted tools", parents=[common]).set_defaults(
        run=tool_list, render=render_tools
    )
    p = tools.add_parser("revoke", help="cut a tool off at once", parents=[common])
    p.set_defaults(run=tool_revoke, render=render_tool_revoked)
    p.add_argument("name")


LIFECYCLE = {
    "start": "start an agent",
    "stop": "stop an agent",
    "restart": "restart an agent",
    "destroy": "stop an agent and revoke it, keeping its state (a tombstone)",
    "revive": "bring a destroyed agent back",
    "purge": "remove a destroyed agent for good",
}
HARNESS = {
    "turn": "what an agent's harness is doing (idle, thinking, waiting, …)",
    "interrupt": "cancel an agent's running turn (its messages go with the next one)",
    "compact": "compact an agent's session now",
    "pause": "pause an agent: messages queue, no turns run",
    "resume": "resume a paused agent",
}
