"""Evaluate an agent.nix into its policy with `nix-instantiate --eval --json`, in restricted mode: the file sees only
its own repo (no host paths), and the `hyperhive` options need no nixpkgs."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from pydantic import ValidationError

from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AgentPolicy

EXPRESSION = (
    "let m = import <agent/agent.nix>; "
    "a = if builtins.isFunction m then m { pkgs = {}; lib = {}; config = {}; } else m; "
    "in a.hyperhive or {}"
)
TIMEOUT_SECONDS = 30


def evaluate(checkout: Path, agent: str) -> AgentPolicy:
    """The policy declared by `checkout/agent.nix`, validated; a sentence naming the problem when it is not."""
    nix = shutil.which("nix-instantiate")
    if nix is None:
        raise HiveError(ErrorCode.UNAVAILABLE, "nix-instantiate is not installed (Debian: nix-bin).")
    if not (checkout / "agent.nix").is_file():
        raise HiveError(ErrorCode.INVALID_REQUEST, f"The commit for {agent} has no agent.nix.")
    try:
        done = subprocess.run(
            [
                nix,
                "--eval",
                "--json",
                "--strict",
                "--option",
                "restrict-eval",
                "true",
                "--option",
                "allow-import-from-derivation",
                "false",
                "-I",
                f"agent={checkout}",
                "-E",
                EXPRESSION,
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
            check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": str(checkout), "NIX_PATH": ""},
        )
    except subprocess.TimeoutExpired:
        raise HiveError(
            ErrorCode.INVALID_REQUEST, f"agent.nix of {agent} did not evaluate within {TIMEOUT_SECONDS}s."
        ) from None
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[0] if done.stderr.strip() else "no message"
        raise HiveError(ErrorCode.INVALID_REQUEST, f"agent.nix of {agent} does not evaluate: {message}")
    try:
        return AgentPolicy.model_validate({**json.loads(done.stdout), "agent": agent})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise HiveError(
            ErrorCode.INVALID_REQUEST, f"agent.nix of {agent}: hyperhive.{where}: {first['msg']}."
        ) from None
