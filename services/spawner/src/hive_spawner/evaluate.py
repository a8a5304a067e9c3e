"""Evaluate an agent.nix into its policy with `nix-instantiate --eval --json`, in restricted mode: the file sees only
its own checkout (no host paths), and the `hyperhive` options need no nixpkgs.

The checkout is a copy of the frozen objects (`ConfigRepos.checkout`), never the proposed repo, and it is the
manager's data: nix reads no configuration from it (HOME and the XDG dirs are an empty directory of the spawner's,
so a committed `.config/nix/nix.conf` cannot turn on `builtins.exec`), and the settings that would run or fetch
anything are off on the command line, which wins over every nix.conf."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import tempfile
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
OPTIONS = (
    ("restrict-eval", "true"),
    ("allow-import-from-derivation", "false"),
    ("allow-unsafe-native-code-during-evaluation", "false"),
    ("plugin-files", ""),
    ("allowed-uris", ""),
)


def evaluate(checkout: Path, agent: str) -> AgentPolicy:
    """The policy declared by `checkout/agent.nix`, validated; a sentence naming the problem when it is not."""
    nix = shutil.which("nix-instantiate")
    if nix is None:
        raise HiveError(ErrorCode.UNAVAILABLE, "nix-instantiate is not installed (Debian: nix-bin).")
    if os.path.lexists(checkout / ".git"):  # a repo, not a checkout of frozen objects (`ConfigRepos.checkout`)
        raise HiveError(ErrorCode.INVALID_REQUEST, f"{checkout} is a git repo; only a checkout is evaluated.")
    agent_nix = checkout / "agent.nix"
    if not agent_nix.exists() or not stat.S_ISREG(agent_nix.lstat().st_mode):
        raise HiveError(ErrorCode.INVALID_REQUEST, f"The commit for {agent} has no agent.nix (a regular file).")
    options = [a for k, v in OPTIONS for a in ("--option", k, v)]
    # No store: evaluating a policy builds and copies nothing, and needs no nix daemon (which a user may not reach).
    store = ["--store", "dummy://"]
    argv = [nix, "--eval", "--json", "--strict", *store, *options, "-I", f"agent={checkout}", "-E", EXPRESSION]
    with tempfile.TemporaryDirectory(prefix="hive-nix-home-") as home:
        env = {"PATH": "/usr/bin:/bin", "NIX_USER_CONF_FILES": "", "NIX_PATH": ""}
        env |= dict.fromkeys(("HOME", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "XDG_CACHE_HOME"), home)
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False, env=env)
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
