"""hivectl's commands over NATS: each is a small async function plus a plain-text rendering of its result."""

from __future__ import annotations

import argparse
from functools import partial
from typing import Any

from nats.aio.client import Client
from pydantic import BaseModel

from hyperhive import bus
from hyperhive.wire import subjects
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
)


def table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    )


async def status(nc: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    stats = await bus.discover(nc, "STATS")
    return sorted(stats, key=lambda s: (s["name"], s["id"]))


def render_status(stats: list[dict[str, Any]]) -> str:
    if not stats:
        return "No hyperhive service answers on this NATS server."
    rows = []
    for s in stats:
        endpoints = s.get("endpoints") or []
        requests = sum(e.get("num_requests", 0) for e in endpoints)
        errors = sum(e.get("num_errors", 0) for e in endpoints)
        rows.append(
            [
                s["name"],
                s["version"],
                s["id"],
                str(len(endpoints)),
                str(requests),
                str(errors),
                s.get("started", ""),
            ]
        )
    return table(rows, ["SERVICE", "VERSION", "ID", "ENDPOINTS", "REQUESTS", "ERRORS", "STARTED"])


def _broker(verb: str) -> str:
    return subjects.operator(subjects.BROKER, verb)


async def send(nc: Client, args: argparse.Namespace) -> dict[str, Any]:
    reply = await bus.call(nc, _broker("send"), OperatorSendRequest(to=args.to, body=args.body), SendReply)
    return reply.model_dump()


def render_send(reply: dict[str, Any]) -> str:
    return f"sent {reply['id']} to {', '.join(reply['recipients'])}"


async def inbox(nc: Client, args: argparse.Namespace) -> dict[str, Any]:
    reply = await bus.call(nc, _broker("inbox"), InboxRequest(owner=args.owner, limit=args.limit), InboxReply)
    return reply.model_dump(mode="json", by_alias=True)


def render_inbox(reply: dict[str, Any]) -> str:
    rows = [
        [
            str(e["message"]["seq"]),
            e["message"]["sent_at"][:19],
            e["message"]["from"],
            e["state"],
            e["message"]["body"].replace("\n", " ")[:80],
        ]
        for e in reply["entries"]
    ]
    head = f"inbox of {reply['owner']}: {reply['pending']} pending\n"
    return head + table(rows, ["SEQ", "SENT", "FROM", "STATE", "BODY"])


async def depths(nc: Client, args: argparse.Namespace) -> dict[str, int]:
    return (await bus.call(nc, _broker("depths"), Empty(), DepthsReply)).depths


def render_depths(reply: dict[str, int]) -> str:
    return table([[k, str(v)] for k, v in sorted(reply.items())], ["INBOX", "UNACKED"])


def _approver(verb: str) -> str:
    return subjects.operator(subjects.APPROVER, verb)


async def approvals(nc: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    req = ApprovalsRequest(status=args.status, limit=args.limit)
    reply = await bus.call(nc, _approver("approvals"), req, ApprovalsReply)
    return [a.model_dump(mode="json") for a in reply.approvals]


def render_approvals(items: list[dict[str, Any]]) -> str:
    rows = [
        [
            str(a["id"]),
            a["type"],
            a["agent"],
            a["status"],
            a["requested_by"],
            (a.get("tool") or a.get("commit_ref") or ""),
            a["description"][:50],
        ]
        for a in items
    ]
    return table(rows, ["ID", "KIND", "AGENT", "STATUS", "BY", "REF/TOOL", "DESCRIPTION"])


async def decide(nc: Client, args: argparse.Namespace) -> dict[str, Any]:
    reply = await bus.call(nc, _approver(args.command), DecisionRequest(id=args.id, note=args.note), Approval)
    return reply.model_dump(mode="json")


def render_decision(a: dict[str, Any]) -> str:
    return f"approval #{a['id']} ({a['type']} for {a['agent']}) is {a['status']}"


async def questions(nc: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    req = QuestionsRequest(status=args.status, limit=args.limit)
    reply = await bus.call(nc, _approver("questions"), req, QuestionsReply)
    return [q.model_dump(mode="json") for q in reply.questions]


def render_questions(items: list[dict[str, Any]]) -> str:
    rows = [
        [str(q["id"]), q["asker"], q["status"], q["question"][:60], " | ".join(q["options"]), q.get("answer") or ""]
        for q in items
    ]
    return table(rows, ["ID", "ASKER", "STATUS", "QUESTION", "OPTIONS", "ANSWER"])


async def answer(nc: Client, args: argparse.Namespace) -> dict[str, Any]:
    req = AnswerRequest(id=args.id, choices=args.choice or [], text=args.text)
    return (await bus.call(nc, _approver("answer"), req, Question)).model_dump(mode="json")


async def cancel(nc: Client, args: argparse.Namespace) -> dict[str, Any]:
    return (await bus.call(nc, _approver("cancel"), QuestionRef(id=args.id), Question)).model_dump(mode="json")


def render_question(q: dict[str, Any]) -> str:
    return f"question #{q['id']} of {q['asker']} is {q['status']}: {q.get('answer')}"


def _spawner(verb: str) -> str:
    return subjects.operator(subjects.SPAWNER, verb)


async def agents(nc: Client, args: argparse.Namespace) -> list[dict[str, Any]]:
    reply = await bus.call(nc, _spawner("agents"), Empty(), AgentsReply)
    return [a.model_dump(mode="json") for a in reply.agents]


def render_agents(items: list[dict[str, Any]]) -> str:
    rows = [[a["name"], a["state"], (a.get("applied") or "")[:12], str(a.get("uid") or "")] for a in items]
    return table(rows, ["AGENT", "STATE", "APPLIED", "UID"])


async def logs(nc: Client, args: argparse.Namespace) -> list[str]:
    return (await bus.call(nc, _spawner("logs"), LogsRequest(agent=args.agent, lines=args.lines), LogsReply)).lines


def render_logs(lines: list[str]) -> str:
    return "\n".join(lines)


async def lifecycle(nc: Client, args: argparse.Namespace) -> dict[str, Any]:
    reply = await bus.call(nc, _spawner(args.command), AgentRequest(agent=args.agent), AgentStatus, timeout=30)
    return reply.model_dump(mode="json")


async def agent_config(nc: Client, args: argparse.Namespace) -> dict[str, Any]:
    reply = await bus.call(nc, _spawner("agent-config"), AgentRequest(agent=args.agent), AgentConfigReply)
    return reply.model_dump(mode="json")


def render_config(reply: dict[str, Any]) -> str:
    return f"# {reply['agent']} @ {reply['sha'][:12]}\n{reply['agent_nix']}"


def render_status_of(a: dict[str, Any]) -> str:
    return f"{a['name']} is {a['state']}"


async def harness(nc: Client, args: argparse.Namespace) -> dict[str, Any]:
    """An agent's harness plane: `turn` (its state), `interrupt`, `compact`, `pause`, `resume`, `model`."""
    subject = partial(subjects.harness, args.agent)
    if args.command == "turn" or (args.command == "model" and args.model is None and not args.default):
        return (await bus.call(nc, subject("state"), Empty(), HarnessState)).model_dump(mode="json")
    request: BaseModel = Empty()
    verb = {"interrupt": "cancel", "resume": "pause"}.get(args.command, args.command)
    if args.command in ("pause", "resume"):
        request = PauseRequest(paused=args.command == "pause")
    elif args.command == "model":
        request = ModelRequest(model=None if args.default else args.model)
    return (await bus.call(nc, subject(verb), request, HarnessReply, timeout=600)).model_dump(mode="json")


def render_harness(reply: dict[str, Any]) -> str:
    state = reply.get("state", reply)
    line = f"{state['agent']} is {state['state']} (model {state['model']}, {state['turns']} turns)"
    line += f": {state['note']}" if state.get("note") else ""
    return f"{reply['done']}\n{line}" if "done" in reply else line


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="list the running services, with request and error counts")
    p.set_defaults(run=status, render=render_status)

    p = sub.add_parser("send", help="send a message to an agent (or '*' for every agent) as the operator")
    p.add_argument("to")
    p.add_argument("body")
    p.set_defaults(run=send, render=render_send)

    p = sub.add_parser("inbox", help="recent messages of an inbox (default: the operator's)")
    p.add_argument("owner", nargs="?", default="operator")
    p.add_argument("--limit", type=int, default=20)
    p.set_defaults(run=inbox, render=render_inbox)

    p = sub.add_parser("depths", help="unacknowledged messages per inbox")
    p.set_defaults(run=depths, render=render_depths)

    p = sub.add_parser("approvals", help="list approvals, newest first")
    p.add_argument("--status", default=None, help="pending, applying, deployed, denied, …")
    p.add_argument("--limit", type=int, default=30)
    p.set_defaults(run=approvals, render=render_approvals)

    for verb in ("approve", "deny"):
        p = sub.add_parser(verb, help=f"{verb} an approval")
        p.add_argument("id", type=int)
        p.add_argument("--note", default=None)
        p.set_defaults(run=decide, render=render_decision)

    p = sub.add_parser("questions", help="list the agents' questions")
    p.add_argument("--status", default=None, help="pending, answered, expired, cancelled")
    p.add_argument("--limit", type=int, default=30)
    p.set_defaults(run=questions, render=render_questions)

    p = sub.add_parser("answer", help="answer a question: free text, or --choice (repeat when it takes several)")
    p.add_argument("id", type=int)
    p.add_argument("text", nargs="?", default=None)
    p.add_argument("--choice", action="append")
    p.set_defaults(run=answer, render=render_question)

    p = sub.add_parser("agents", help="the hive's agents and their states")
    p.set_defaults(run=agents, render=render_agents)

    p = sub.add_parser("config", help="an agent's applied agent.nix")
    p.add_argument("agent")
    p.set_defaults(run=agent_config, render=render_config)

    p = sub.add_parser("logs", help="the last lines of an agent's journal")
    p.add_argument("agent")
    p.add_argument("--lines", type=int, default=100)
    p.set_defaults(run=logs, render=render_logs)

    per_agent(
        sub,
        lifecycle,
        render_status_of,
        {
            "start": "start an agent",
            "stop": "stop an agent",
            "restart": "restart an agent",
            "destroy": "stop an agent and revoke it, keeping its state (a tombstone)",
            "revive": "bring a destroyed agent back",
            "purge": "remove a destroyed agent for good",
        },
    )

    register_harness(sub)

    p = sub.add_parser("cancel", help="withdraw a question (the asker is told [cancelled])")
    p.add_argument("id", type=int)
    p.set_defaults(run=cancel, render=render_question)


def per_agent(sub: Any, run: Any, render: Any, verbs: dict[str, str]) -> None:
    """Commands that take one agent's name and nothing else."""
    for verb, what in verbs.items():
        p = sub.add_parser(verb, help=what)
        p.add_argument("agent")
        p.set_defaults(run=run, render=render)


def register_harness(sub: Any) -> None:
    """The commands served by an agent's harness."""
    per_agent(
        sub,
        harness,
        render_harness,
        {
            "turn": "what an agent's harness is doing (idle, thinking, waiting, …)",
            "interrupt": "cancel an agent's running turn (its messages go with the next one)",
            "compact": "compact an agent's session now",
            "pause": "pause an agent: messages queue, no turns run",
            "resume": "resume a paused agent",
        },
    )
    p = sub.add_parser("model", help="show or set the model an agent's next turns run with (the operator's /model)")
    p.add_argument("agent")
    p.add_argument("model", nargs="?", default=None)
    p.add_argument("--default", action="store_true", help="back to the model in the agent's agent.nix")
    p.set_defaults(run=harness, render=render_harness)
