"""Per agent, two git repos on the host: `proposed/<name>` (the manager writes it) and `applied/<name>` (only the
spawner writes it). A commit is frozen as tag `proposal/<id>` before the operator sees it, and what is applied is
exactly that tag's commit, however the proposed repo moves on."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.names import check_agent_ref

COMMIT_REF = re.compile(r"[0-9a-f]{7,40}")
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
GIT_ENV = {
    **os.environ,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": str(Path(__file__).with_name("gitconfig")),
    "GIT_TERMINAL_PROMPT": "0",
}


def git(repo: Path, *args: str, check: bool = True) -> str:
    """Run git in `repo` with the spawner's own configuration (`gitconfig` beside this file) and no other."""
    done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, env=GIT_ENV, check=False)
    if check and done.returncode != 0:
        raise HiveError(ErrorCode.INVALID_REQUEST, f"git {args[0]} failed in {repo.name}: {done.stderr.strip()}")
    return done.stdout.strip()


@dataclass(frozen=True)
class Frozen:
    sha: str
    tag: str
    diff: str


class ConfigRepos:
    def __init__(self, root: Path) -> None:
        self.root = root

    def proposed(self, name: str) -> Path:
        return self.root / "proposed" / check_agent_ref(name)

    def applied(self, name: str) -> Path:
        return self.root / "applied" / check_agent_ref(name)

    def create(self, name: str) -> str:
        """A proposed repo from the template (one commit) and an empty applied repo; return the first commit."""
        proposed, applied = self.proposed(name), self.applied(name)
        if proposed.exists():
            raise HiveError(ErrorCode.CONFLICT, f"Agent {name!r} has a proposed repo already.")
        proposed.mkdir(parents=True)
        git(proposed, "init", "-q", "-b", "main")
        template = resources.files("hive_spawner") / "template"
        for item in template.iterdir():
            if item.is_file():
                (proposed / item.name).write_text(item.read_text())
        git(proposed, "add", "-A")
        git(proposed, "commit", "-q", "-m", f"{name}: from the template")
        applied.mkdir(parents=True, exist_ok=True)
        git(applied, "init", "-q", "-b", "main")
        return git(proposed, "rev-parse", "HEAD")

    def exists(self, name: str) -> bool:
        return self.proposed(name).is_dir()

    def freeze(self, name: str, ref: str, approval_id: int) -> Frozen:
        """Tag `ref` of the proposed repo as `proposal/<approval_id>` and diff it against what is applied."""
        if not COMMIT_REF.fullmatch(ref):
            raise HiveError(ErrorCode.INVALID_REQUEST, f"{ref!r} is not a commit id (7-40 lowercase hex).")
        proposed = self.proposed(name)
        if not proposed.is_dir():
            raise HiveError(ErrorCode.NOT_FOUND, f"Agent {name!r} has no proposed repo.")
        sha = git(proposed, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if not sha:
            raise HiveError(ErrorCode.NOT_FOUND, f"{ref} is not a commit of {name}'s proposed repo.")
        tag = f"proposal/{approval_id}"
        existing = git(proposed, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}", check=False)
        if existing and existing != sha:
            raise HiveError(ErrorCode.CONFLICT, f"Tag {tag} already freezes another commit ({existing[:12]}).")
        if not existing:
            git(proposed, "tag", tag, sha)
        base = git(self.applied(name), "rev-parse", "--verify", "--quiet", "HEAD", check=False) or EMPTY_TREE
        if base != EMPTY_TREE:
            git(proposed, "fetch", "-q", str(self.applied(name)), "HEAD")
        diff = git(proposed, "diff", "--no-color", base, sha)
        return Frozen(sha=sha, tag=tag, diff=diff)

    @contextmanager
    def checkout(self, name: str, tag: str, sha: str) -> Iterator[Path]:
        """The frozen commit's files in a temporary directory, after checking the tag still names `sha`."""
        proposed = self.proposed(name)
        tagged = git(proposed, "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}", check=False)
        if tagged != sha:
            raise HiveError(ErrorCode.CONFLICT, f"Tag {tag} of {name} no longer names the frozen commit {sha[:12]}.")
        with self._extract(proposed, sha) as files:
            yield files

    @contextmanager
    def checkout_applied(self, name: str) -> Iterator[Path]:
        """The applied commit's files in a temporary directory (to revive an agent from its tombstone)."""
        applied = self.applied(name)
        sha = git(applied, "rev-parse", "--verify", "--quiet", "HEAD", check=False)
        if not sha:
            raise HiveError(ErrorCode.NOT_FOUND, f"Agent {name!r} has no applied config.")
        with self._extract(applied, sha) as files:
            yield files

    @contextmanager
    def _extract(self, repo: Path, sha: str) -> Iterator[Path]:
        tmp = Path(tempfile.mkdtemp(prefix="hive-config-"))
        try:
            archive = subprocess.run(
                ["git", "-C", str(repo), "archive", sha], capture_output=True, env=GIT_ENV, check=True
            ).stdout
            subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
            yield tmp
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def apply(self, name: str, tag: str, sha: str) -> None:
        """Make the frozen commit the applied one. Only call after it evaluated cleanly: nothing is half applied."""
        applied = self.applied(name)
        git(applied, "fetch", "-q", str(self.proposed(name)), f"refs/tags/{tag}:refs/tags/{tag}")
        if git(applied, "rev-parse", f"refs/tags/{tag}^{{commit}}") != sha:
            raise HiveError(ErrorCode.CONFLICT, f"Tag {tag} of {name} no longer names the frozen commit {sha[:12]}.")
        git(applied, "update-ref", "refs/heads/main", sha)
        git(applied, "symbolic-ref", "HEAD", "refs/heads/main")
