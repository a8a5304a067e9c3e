"""The `hivectl` command line: `hivectl up` runs a local hive; every other command talks to a hive over NATS."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from hivectl import commands
from hivectl.layout import operator_settings
from hivectl.up import UpOptions, up
from hyperhive import bus
from hyperhive.settings import SettingsError, default_state_dir
from hyperhive.wire import subjects
from hyperhive.wire.errors import HiveError
from hyperhive.wire.names import OPERATOR

Command = Callable[[Client, argparse.Namespace], Awaitable[Any]]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hivectl", description="Operate a hyperhive hive.")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    u = sub.add_parser("up", help="start a local hive: NATS, PostgreSQL and every installed service")
    u.add_argument("--state-dir", type=Path, default=None, help="default: ~/.local/share/hyperhive")
    u.add_argument("--host", default="127.0.0.1", help="address every server binds (default: loopback)")
    u.add_argument("--nats-port", type=int, default=4222)
    u.add_argument("--postgres-port", type=int, default=5433, help="names its unix socket (and its TCP port)")
    u.add_argument(
        "--postgres-tcp",
        action="store_true",
        help="also listen on TCP at --host:--postgres-port (agents on the local backend share the host's loopback)",
    )
    u.add_argument("--database-url", default=None, help="use this PostgreSQL instead of the embedded one")
    u.add_argument("--demo", action="store_true", help="agents talk to a scripted model, not Anthropic")

    commands.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command == "up":
        return up(
            UpOptions(
                state_dir=args.state_dir or default_state_dir(),
                host=args.host,
                nats_port=args.nats_port,
                postgres_port=args.postgres_port,
                postgres_tcp=args.postgres_tcp,
                database_url=args.database_url,
                demo=args.demo,
            )
        )
    try:
        result = asyncio.run(_over_nats(args.run, args))
    except (HiveError, SettingsError) as exc:
        print(f"hivectl: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2, default=str))
    else:
        print(args.render(result))
    return 0


async def _over_nats(run: Command, args: argparse.Namespace) -> Any:
    async with bus.connected(
        operator_settings(), name="hivectl", inbox_prefix=subjects.reply_prefix(OPERATOR), allow_reconnect=False
    ) as nc:
        return await run(nc, args)
