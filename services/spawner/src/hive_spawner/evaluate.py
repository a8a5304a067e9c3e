"""Evaluate an agent.nix into its policy with nixpkgs' module system (`lib.evalModules`) against the agent options
(`nix/agent-options.nix`, the one definition the containers import too), with `nix-instantiate --eval --json` in
restricted mode: the file sees only its own checkout, the hive's options and the nixpkgs lib, no host path.

The checkout is a copy of the frozen objects (`ConfigRepos.checkout`), never the proposed repo, and it is the
manager's data: nix reads no configuration from it (HOME and the XDG dirs are an empty directory of the spawner's,
so a committed `.config/nix/nix.conf` cannot turn on `builtins.exec`), and the settings that would run or fetch
anything are off on the command line, which wins over every nix.conf. The options ship inside this package, so no
agent can write them; the lib is the operator's (`HIVE_NIX_LIB`, which the NixOS module sets)."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import tempfile
from pathlib import Path

from pydantic import ValidationError

from hyperhive.process import installed
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AgentPolicy

NIX_DIR = Path(__file__).parent / "nix"
"""`agent-options.nix` (the options), `evaluate.nix` (how an agent.nix is evaluated) and `options.nix` (the options
as data, for the tests and docs/nixos.md)."""
SET_BY_SPAWNER = frozenset({"kind", "agent"})
"""Fields of `AgentPolicy` that are no option: the spawner sets them."""
CONTAINER_ONLY = frozenset({"packages"})
"""Options that shape the container and are no part of the policy the broker and harness read."""
NO_LIB = (
    "The hyperhive options cannot be evaluated: no nixpkgs lib was found. Set HIVE_NIX_LIB to the `lib` folder of "
    "a copy of nixpkgs (a nixpkgs checkout, or the nix-community/nixpkgs.lib repository; the hyperhive NixOS module "
    "sets it), or put nixpkgs on NIX_PATH (nixpkgs=/path/to/nixpkgs)."
)
TIMEOUT_SECONDS = 30
OPTIONS = (
    ("restrict-eval", "true"),
    ("allow-import-from-derivation", "false"),
    ("allow-unsafe-native-code-during-evaluation", "false"),
    ("plugin-files", ""),
    ("allowed-uris", ""),
)
MAX_MESSAGE = 1500
CODE_FRAME = re.compile(r"\s*\d*\s*\|")


def find_nix_lib(configured: Path | None = None) -> Path:
    """The nixpkgs lib to evaluate with: `configured` (the spawner's `nix_lib`), else `HIVE_NIX_LIB`, else
    `nixpkgs=<path>` on NIX_PATH; a sentence saying how to get one when there is none."""
    lib = configured or (Path(v) if (v := os.environ.get("HIVE_NIX_LIB")) else None) or _nixpkgs_on_nix_path()
    if lib is None:
        raise HiveError(ErrorCode.UNAVAILABLE, NO_LIB)
    if not ((lib / "default.nix").is_file() and (lib / "modules.nix").is_file()):
        raise HiveError(ErrorCode.UNAVAILABLE, f"{lib} is not a nixpkgs lib (no default.nix and modules.nix). {NO_LIB}")
    return lib.resolve()


def _nixpkgs_on_nix_path() -> Path | None:
    for entry in os.environ.get("NIX_PATH", "").split(":"):
        name, _, path = entry.partition("=")
        if name == "nixpkgs" and path.startswith("/"):
            return Path(path) / "lib"
    return None


def nix_instantiate() -> str:
    return installed("nix-instantiate", "nix-bin")


def run_restricted(expression: str, roots: dict[str, Path], args: dict[str, str] | None = None) -> str:
    """`expression` evaluated to JSON in restricted mode, seeing only `roots` (`<name/…>`); its stderr as the
    error when it fails. Used for agent.nix and, by the tests and docs, for the options themselves."""
    options = [a for k, v in OPTIONS for a in ("--option", k, v)]
    # No store: evaluating a policy builds and copies nothing, and needs no nix daemon (which a user may not reach).
    store = ["--store", "dummy://"]
    paths = [a for name, root in roots.items() for a in ("-I", f"{name}={root}")]
    argstrs = [a for name, value in (args or {}).items() for a in ("--argstr", name, value)]
    argv = [nix_instantiate(), "--eval", "--json", "--strict", *store, *options, *paths, *argstrs, "-E", expression]
    with tempfile.TemporaryDirectory(prefix="hive-nix-home-") as home:
        env = {"PATH": "/usr/bin:/bin", "NIX_USER_CONF_FILES": "", "NIX_PATH": ""}
        env |= dict.fromkeys(("HOME", "XDG_CONFIG_HOME", "XDG_CONFIG_DIRS", "XDG_CACHE_HOME"), home)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False, env=env)
    if done.returncode != 0:
        raise NixError(done.stderr)
    return done.stdout


class NixError(Exception):
    """nix-instantiate failed; `message` is its last `error:` block (the earlier lines are traces)."""

    def __init__(self, stderr: str) -> None:
        lines = [ln for ln in stderr.strip().splitlines() if not ln.startswith("(use '--show-trace'")]
        lines = [ln for ln in lines if not CODE_FRAME.match(ln)]  # the source lines nix quotes, with their numbers
        starts = [i for i, ln in enumerate(lines) if ln.startswith("error:")]
        block = lines[starts[-1] :] if starts else lines
        self.message = re.sub(r"\s+", " ", " ".join(block).removeprefix("error:")).strip() or "no message"
        super().__init__(self.message)


def evaluate(
    checkout: Path, agent: str, *, nix_lib: Path | None = None, default_model: str | None = None
) -> AgentPolicy:
    """The policy declared by `checkout/agent.nix`, evaluated with the agent options and validated; a sentence
    naming the problem (the evaluator's own, for a misspelt option or a wrong type) when it is not.

    `default_model` replaces the options' default model (the operator's choice for the hive, `HIVE_DEFAULT_MODEL`);
    what agent.nix says still wins."""
    nix_instantiate()
    lib = find_nix_lib(nix_lib)
    if os.path.lexists(checkout / ".git"):  # a repo, not a checkout of frozen objects (`ConfigRepos.checkout`)
        raise HiveError(ErrorCode.INVALID_REQUEST, f"{checkout} is a git repo; only a checkout is evaluated.")
    agent_nix = checkout / "agent.nix"
    if not agent_nix.exists() or not stat.S_ISREG(agent_nix.lstat().st_mode):
        raise HiveError(ErrorCode.INVALID_REQUEST, f"The commit for {agent} has no agent.nix (a regular file).")
    model = default_model if default_model is not None else os.environ.get("HIVE_DEFAULT_MODEL")
    roots = {"hivelib": lib, "hive": NIX_DIR, "agent": checkout}
    try:
        out = run_restricted("import <hive/evaluate.nix>", roots, {"defaultModel": model or ""})
    except subprocess.TimeoutExpired:
        raise HiveError(
            ErrorCode.INVALID_REQUEST, f"agent.nix of {agent} did not evaluate within {TIMEOUT_SECONDS}s."
        ) from None
    except NixError as exc:
        # The checkout is a temporary folder: its path says nothing to the manager or the operator.
        message = exc.message.replace(f"{checkout}/", "")
        if len(message) > MAX_MESSAGE:
            message = message[:MAX_MESSAGE] + " …"
        raise HiveError(ErrorCode.INVALID_REQUEST, f"agent.nix of {agent} does not evaluate: {message}") from None
    try:
        return AgentPolicy.model_validate({**json.loads(out), "agent": agent})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise HiveError(
            ErrorCode.INVALID_REQUEST, f"agent.nix of {agent}: hyperhive.{where}: {first['msg']}."
        ) from None
