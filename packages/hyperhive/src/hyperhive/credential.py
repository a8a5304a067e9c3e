"""The hive's one Anthropic credential (`hivectl login`): an API key, or a Claude subscription token from
`claude setup-token`. It is kept in a 0600 file on the host; the spawner copies it into each agent's read-only
/run/hive, and the harness puts it into the claude CLI's environment only — never an argument, a log line, the
agent's writable state or the Nix store."""

from __future__ import annotations

import re
from pathlib import Path

from hyperhive.wire.errors import ErrorCode, HiveError

FILE = "credential"
"""Its name in an agent's policy folder (`/run/hive/credential` in the sandbox)."""
SUBSCRIPTION_PREFIX = "sk-ant-oat"  # what `claude setup-token` prints; API keys are `sk-ant-api…`
SHAPE = re.compile(r"[A-Za-z0-9_\-.]{20,4096}")
CLI_VARIABLES = ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN", "ANTHROPIC_AUTH_TOKEN")


def check(text: str) -> str:
    """The credential in `text` (surrounding whitespace dropped), or a sentence saying why it is not one; the
    sentence never repeats the text, which may be a secret pasted in the wrong place."""
    token = text.strip()
    if not token:
        raise HiveError(ErrorCode.INVALID_REQUEST, "The credential is empty.")
    if not SHAPE.fullmatch(token):
        raise HiveError(
            ErrorCode.INVALID_REQUEST,
            f"That is not an API key or a `claude setup-token` token ({len(token)} characters; a credential is "
            "20-4096 letters, digits, '-', '_' or '.', on one line).",
        )
    return token


def kind(token: str) -> str:
    return "subscription token" if token.startswith(SUBSCRIPTION_PREFIX) else "API key"


def cli_env(token: str) -> dict[str, str]:
    """The CLI's variable for `token`: a subscription token is sent as a bearer token, a key as `x-api-key`."""
    name = "CLAUDE_CODE_OAUTH_TOKEN" if token.startswith(SUBSCRIPTION_PREFIX) else "ANTHROPIC_API_KEY"
    return {name: token}


def read(path: Path) -> str | None:
    """The credential stored at `path`, or None when there is none (or what is there is not one)."""
    try:
        return check(path.read_text())
    except (OSError, UnicodeDecodeError, HiveError):
        return None
