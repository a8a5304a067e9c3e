"""The `hivectl` command line: `hivectl up` runs a local hive; every other command talks to a hive over NATS.

Every command takes `--json` and `--state-dir` wherever they are written. Output is rendered from the services' wire
models; bad input is one line on stderr and exit status 2, a refusal or an unreachable hive exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path
from typing import NoReturn

from pydantic import BaseModel, ValidationError

from hivectl import commands
from hivectl.layout import operator_settings
from hivectl.up import UpOptions, up
from hyperhive import bus
from hyperhive.settings import SettingsError, default_state_dir
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError, first_problem
from hyperhive.wire.names import OPERATOR

BAD_INPUT = frozenset({ErrorCode.INVALID_NAME, ErrorCode.INVALID_REQUEST, ErrorCode.INVALID_BODY})


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line, not the usage: `hivectl <command> --help` has that."""
        self.exit(2, f"{self.prog}: {message}\n")


def common_options(*, top: bool) -> Parser:
    """`--json` and `--state-dir`, taken before the command or after it (a command's own default never hides a
    value given before the command)."""
    p = Parser(add_help=False)
    unset = None if top else argparse.SUPPRESS
    where = "the hive's state dir (default: $HIVE_STATE_DIR, else ~/.local/share/hyperhive; as root /var/lib/hyperhive)"
    p.add_argument("--json", action="store_true", default=False if top else argparse.SUPPRESS, help="print JSON")
    p.add_argument("--state-dir", type=Path, default=unset, help=where)
    return p


def parser() -> Parser:
    p = Parser(prog="hivectl", description="Operate a hyperhive hive.", parents=[common_options(top=True)])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    common = common_options(top=False)

    u = sub.add_parser("up", help="start a local hive: NATS, PostgreSQL and every installed service", parents=[common])
    u.add_argument("--host", default="127.0.0.1", help="address every server binds (default: loopback)")
    u.add_argument("--nats-port", type=int, default=4222)
    u.add_argument("--postgres-port", type=int, default=5433, help="names its unix socket (and its TCP port)")
    u.add_argument(
        "--postgres-tcp",
        action="store_true",
        help="also listen on TCP at --host:--postgres-port (agents on the local backend share the host's loopback)",
    )
    u.add_argument("--dashboard-port", type=int, default=8420, help="where the dashboard listens (on --host)")
    u.add_argument("--database-url", default=None, help="use this PostgreSQL instead of the embedded one")
    u.add_argument("--demo", action="store_true", help="agents talk to a scripted model, not Anthropic")
    u.add_argument("-v", "--verbose", action="store_true", help="show every line of every process, not only events")

    commands.register(sub, common)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.command != "up":  # a command's outcome is its one line; the client library's warnings are not
        logging.basicConfig(level=logging.ERROR)
    if args.command == "up":
        return up(
            UpOptions(
                state_dir=args.state_dir or default_state_dir(),
                host=args.host,
                nats_port=args.nats_port,
                postgres_port=args.postgres_port,
                postgres_tcp=args.postgres_tcp,
                dashboard_port=args.dashboard_port,
                database_url=args.database_url,
                demo=args.demo,
                verbose=args.verbose,
            )
        )
    try:
        outcome = args.run(args)  # a command done here (a log file, a login) is its answer; others ask the hive
        result = outcome if isinstance(outcome, BaseModel) else asyncio.run(_over_nats(outcome, args.state_dir))
    except ValidationError as exc:
        return _fail(2, "{}: {}".format(*first_problem(exc)))
    except HiveError as exc:
        return _fail(2 if exc.code in BAD_INPUT else 1, str(exc))
    except SettingsError as exc:
        return _fail(1, str(exc))
    print(result.model_dump_json(indent=2, by_alias=True) if args.json else args.render(result))
    return 0


def _fail(status: int, message: str) -> int:
    print(f"hivectl: {message.splitlines()[0] if message else 'failed'}", file=sys.stderr)
    return status


async def _over_nats(call: commands.Call, state_dir: Path | None) -> BaseModel:
    settings = operator_settings(state_dir)
    async with bus.connected(
        settings, name="hivectl", inbox_prefix=subjects.reply_prefix(OPERATOR), allow_reconnect=False
    ) as nc:
        return await call(nc)
