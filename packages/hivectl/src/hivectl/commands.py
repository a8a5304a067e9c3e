"""hivectl's commands over NATS: each is a small async function plus a plain-text rendering of its result."""

from __future__ import annotations

import argparse
from typing import Any

from nats.aio.client import Client

from hyperhive import bus


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


def register(sub: Any) -> None:
    p = sub.add_parser("status", help="list the running services, with request and error counts")
    p.set_defaults(run=status, render=render_status)
