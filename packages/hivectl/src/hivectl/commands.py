"""hivectl's commands over NATS: each is a small async function plus a plain-text rendering of its result."""

from __future__ import annotations

import argparse
from typing import Any

from nats.aio.client import Client

from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.models import (
    DepthsReply,
    Empty,
    InboxReply,
    InboxRequest,
    OperatorSendRequest,
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
