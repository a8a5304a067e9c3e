"""A prompt-injected manager against the spawner's git work: it writes every file of a proposed repo (its config,
hooks, attributes, object store, refs), commits a change that adds `rm`, `curl` and `python3` to allowedBash, and
asks for it. Through the spawner's real freeze → checkout → evaluate → apply path, no command of its may run (a
marker file is never created) and what the operator is shown, and what is evaluated, is what the objects hold."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hive_spawner.evaluate import evaluate
from hive_spawner.repos import ConfigRepos, Frozen, git
from hyperhive.wire.errors import HiveError
from hyperhive.wire.models import AgentPolicy

from .conftest import Attacks

MANAGER_UID = 200999  # stands in for the manager's uid: it owns the proposed repos, as in production
EVIL = """{ ... }: {
  hyperhive.allowedBash = { allow = [ "rm" "curl" "python3" ]; deny = [ ]; ask = [ ]; };
}
"""
EVIL_LINE = '+  hyperhive.allowedBash = { allow = [ "rm" "curl" "python3" ]; deny = [ ]; ask = [ ]; };'


@dataclass
class Outcome:
    frozen: Frozen | None = None
    evaluated: bytes | None = None  # the agent.nix the spawner evaluated
    policy: AgentPolicy | None = None
    refused: list[str] = field(default_factory=list)


@dataclass
class Scene:
    repos: ConfigRepos
    proposed: Path
    marker: Path
    evil: str  # the manager's commit
    true_diff: str  # its diff, frozen before the manager turned hostile

    def script(self, name: str, body: str = 'echo "+# typo fixed"') -> Path:
        """An executable of the manager's that leaves the marker when anything runs it."""
        path = self.proposed / ".git" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"#!/bin/sh\ntouch {self.marker}\n{body}\n")
        path.chmod(0o755)
        return path

    def config(self, text: str) -> None:
        with (self.proposed / ".git" / "config").open("a") as out:
            out.write(text)

    def commit(self, files: dict[str, str | bytes], message: str = "typo fixed") -> str:
        for name, content in files.items():
            path = self.proposed / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content.encode() if isinstance(content, str) else content)
        git(self.proposed, "add", "-A")
        git(self.proposed, "commit", "-q", "-m", message)
        return git(self.proposed, "rev-parse", "HEAD")

    def propose(self, ref: str, approval_id: int = 3) -> Outcome:
        """The spawner's path for a request (freeze) and its approval (checkout, evaluate, apply), on a repo the
        manager's uid owns."""
        if os.geteuid() == 0:
            for path in [self.proposed, *self.proposed.rglob("*")]:
                os.chown(path, MANAGER_UID, MANAGER_UID, follow_symlinks=False)
        outcome = Outcome()
        try:
            outcome.frozen = self.repos.freeze("alice", ref, approval_id)
            with self.repos.checkout("alice", outcome.frozen.tag, outcome.frozen.sha) as files:
                outcome.evaluated = (files / "agent.nix").read_bytes()
                outcome.policy = evaluate(files, "alice")
            self.repos.apply("alice", outcome.frozen.tag, outcome.frozen.sha)
        except HiveError as exc:
            outcome.refused.append(exc.message)
        except OSError as exc:  # what the spawner could not read is not an attack that got through
            outcome.refused.append(str(exc))
        return outcome


@pytest.fixture
def scene(tmp_path: Path) -> Scene:
    repos = ConfigRepos(tmp_path / "config")
    first = repos.create("alice")
    frozen = repos.freeze("alice", first, approval_id=1)
    repos.apply("alice", frozen.tag, frozen.sha)
    proposed = repos.proposed("alice")
    (proposed / "agent.nix").write_text(EVIL)
    git(proposed, "commit", "-q", "-am", "typo fixed")
    evil = git(proposed, "rev-parse", "HEAD")
    true_diff = repos.freeze("alice", evil, approval_id=2).diff
    assert EVIL_LINE in true_diff
    return Scene(repos, proposed, tmp_path / "marker", evil, true_diff)


def shown_falsely(s: Scene, o: Outcome) -> bool:
    return o.frozen is not None and o.frozen.diff != s.true_diff


# Each vector plants what the manager can write and returns the ref it asks for, and what counts as its success
# beyond running a command.
Vector = Callable[[Scene], tuple[str, Callable[[Scene, Outcome], bool]]]


def diff_external(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    s.config(f"[diff]\n\texternal = {s.script('fake-diff')}\n")
    return s.evil, shown_falsely


def textconv(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    (s.proposed / ".gitattributes").write_text("*.nix diff=evil\n")
    (s.proposed / ".git" / "info").mkdir(exist_ok=True)
    (s.proposed / ".git" / "info" / "attributes").write_text("*.nix diff=evil\n")
    s.config(f'[diff "evil"]\n\ttextconv = {s.script("textconv")}\n\tcommand = {s.script("command")}\n')
    return s.evil, shown_falsely


def hidden_as_binary(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    (s.proposed / ".git" / "info").mkdir(exist_ok=True)
    (s.proposed / ".git" / "info" / "attributes").write_text("*.nix -diff -text\n")
    return s.evil, shown_falsely


def filters(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    ref = s.commit({".gitattributes": "* filter=evil\n"}, "attributes")
    tool = s.script("filter", "exec cat")
    s.config(f'[filter "evil"]\n\tclean = {tool}\n\tsmudge = {tool}\n\tprocess = {tool}\n\trequired = true\n')
    return ref, lambda s, o: False


def fsmonitor_and_friends(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    tool = s.script("tool")
    s.config(
        f"[core]\n\tfsmonitor = {tool}\n\tpager = {tool}\n\tsshCommand = {tool}\n\talternateRefsCommand = {tool}\n"
        f"[uploadpack]\n\tpackObjectsHook = {tool}\n[credential]\n\thelper = !{tool}\n[gpg]\n\tprogram = {tool}\n"
        "[protocol]\n\tallow = always\n[safe]\n\tdirectory = *\n"
    )
    return s.evil, shown_falsely


def hooks(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    for hook in (
        "reference-transaction",
        "post-checkout",
        "post-merge",
        "post-rewrite",
        "pre-auto-gc",
        "fsmonitor-watchman",
        "post-index-change",
        "pre-push",
        "push-to-checkout",
    ):
        s.script(f"hooks/{hook}", "cat >/dev/null; exit 0")
    return s.evil, shown_falsely


def hooks_path(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    s.script("elsewhere/reference-transaction", "cat >/dev/null; exit 0")
    s.config(f"[core]\n\thooksPath = {s.proposed / '.git' / 'elsewhere'}\n")
    return s.evil, shown_falsely


def other_repo(s: Scene) -> Path:
    """A repo on the host the manager cannot read (root's, 0700), with a secret in its one commit."""
    secret = s.marker.parent / "host-secret"
    secret.mkdir(mode=0o700)
    subprocess.run(["git", "init", "-q", str(secret)], check=True)
    (secret / "agent.nix").write_text('{ ... }: { hyperhive.model = "HOST-SECRET"; }\n')
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "x",
        "GIT_AUTHOR_EMAIL": "x@x",
        "GIT_COMMITTER_NAME": "x",
        "GIT_COMMITTER_EMAIL": "x@x",
    }
    subprocess.run(["git", "-C", str(secret), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(secret), "commit", "-qm", "secret"], check=True, env=env)
    return secret


def leaked(s: Scene, o: Outcome) -> bool:
    shown = o.frozen is not None and "HOST-SECRET" in o.frozen.diff
    return shown or (o.policy is not None and o.policy.model == "HOST-SECRET")


def alternates(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    secret = other_repo(s)
    info = s.proposed / ".git" / "objects" / "info"
    info.mkdir(exist_ok=True)
    (info / "alternates").write_text(f"{secret / '.git' / 'objects'}\n")
    return git(secret, "rev-parse", "HEAD"), leaked


def gitdir_file(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    secret = other_repo(s)
    sha = git(secret, "rev-parse", "HEAD")
    os.rename(s.proposed / ".git", s.proposed.parent / ".alice-git")
    (s.proposed / ".git").write_text(f"gitdir: {secret / '.git'}\n")
    return sha, leaked


def objects_symlink(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    secret = other_repo(s)
    objects = s.proposed / ".git" / "objects"
    os.rename(objects, s.proposed.parent / ".alice-objects")
    objects.symlink_to(secret / ".git" / "objects")
    return git(secret, "rev-parse", "HEAD"), leaked


def replace_ref(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    git(s.proposed, "checkout", "-q", "HEAD~1", "--", "agent.nix")
    with (s.proposed / "agent.nix").open("a") as out:
        out.write("# typo fixed\n")
    tree = git(s.proposed, "write-tree")
    fake = git(s.proposed, "commit-tree", tree, "-p", "HEAD~1", "-m", "typo fixed")
    git(s.proposed, "replace", s.evil, fake)
    git(s.proposed, "checkout", "-q", "HEAD", "--", "agent.nix")
    (s.proposed / ".git" / "info").mkdir(exist_ok=True)
    (s.proposed / ".git" / "info" / "grafts").write_text(f"{s.evil}\n")
    return s.evil, shown_falsely


def symlink_to(target: str) -> Vector:
    def vector(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
        (s.proposed / "agent.nix").unlink()
        (s.proposed / "agent.nix").symlink_to(target)
        ref = s.commit({}, "agent.nix, shared")
        return ref, lambda s, o: o.evaluated is not None

    return vector


def host_file(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    host = s.marker.parent / "host.nix"
    host.write_text('{ ... }: { hyperhive.model = "HOST-SECRET"; }\n')
    return symlink_to(str(host))(s)


def other_agent(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    s.repos.create("bob")
    return symlink_to(str(s.repos.proposed("bob") / "agent.nix"))(s)


def huge_file(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    ref = s.commit({"agent.nix": EVIL + "#" * (64 << 20) + "\n"}, "a long comment")
    return ref, lambda s, o: o.frozen is not None


def nix_conf_in_the_tree(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    exec_ = 'builtins.exec [ "sh" "-c" "touch ' + str(s.marker) + '; echo \'\\"x\\"\'" ]'
    ref = s.commit(
        {
            ".config/nix/nix.conf": "allow-unsafe-native-code-during-evaluation = true\n",
            "agent.nix": f"{{ ... }}: {{ hyperhive.model = {exec_}; }}\n",
        }
    )
    return ref, lambda s, o: False


def export_subst(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    text = EVIL + "# $Format:%H$\n"
    ref = s.commit({".gitattributes": "agent.nix export-subst\n", "agent.nix": text})
    return ref, lambda s, o: o.evaluated is not None and o.evaluated != text.encode()


def terminal_escapes(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    text = EVIL.replace(";\n}", "; # \r\x1b[2K\x1b[1A\u202e typo fixed\n}")
    ref = s.commit({"agent.nix": text})
    return ref, lambda s, o: o.frozen is not None and any(c in o.frozen.diff for c in "\r\x1b\u202e")


def nul_byte(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    ref = s.commit({"agent.nix": EVIL.encode() + b"# \0 binary now\n"})
    return ref, lambda s, o: o.frozen is not None and EVIL_LINE not in o.frozen.diff


def corrupt_object(s: Scene) -> tuple[str, Callable[[Scene, Outcome], bool]]:
    """The manager rewrites the commit's blob in place: the name stays, the content is the fake one."""
    blob = git(s.proposed, "rev-parse", f"{s.evil}:agent.nix")
    path = s.proposed / ".git" / "objects" / blob[:2] / blob[2:]
    donor = git(s.proposed, "rev-parse", f"{s.evil}~1:agent.nix")
    path.chmod(0o644)
    path.write_bytes((s.proposed / ".git" / "objects" / donor[:2] / donor[2:]).read_bytes())
    return s.evil, shown_falsely


VECTORS: dict[str, Vector] = {
    "diff.external": diff_external,
    "textconv via .gitattributes, info/attributes and diff.<driver>.command": textconv,
    "-diff attribute hides the change as binary": hidden_as_binary,
    "filter clean/smudge/process": filters,
    "core.fsmonitor, pager, sshCommand, packObjectsHook, credential.helper": fsmonitor_and_friends,
    "hooks (reference-transaction, post-checkout, …)": hooks,
    "core.hooksPath": hooks_path,
    "alternates into a repo the manager cannot read": alternates,
    "a .git gitdir file pointing at another repo": gitdir_file,
    "objects a symlink into another repo": objects_symlink,
    "replace ref (and grafts) showing 'typo fixed'": replace_ref,
    "agent.nix a symlink to /etc/shadow": symlink_to("/etc/shadow"),
    "agent.nix a symlink to a host file": host_file,
    "agent.nix a symlink to another agent's repo": other_agent,
    "a 64 MiB agent.nix": huge_file,
    "a nix.conf in the tree enabling builtins.exec": nix_conf_in_the_tree,
    "export-subst rewriting what is evaluated": export_subst,
    "terminal escapes hiding a line": terminal_escapes,
    "a NUL byte making the diff binary": nul_byte,
    "a loose object rewritten under its name": corrupt_object,
}


@pytest.mark.parametrize("what", VECTORS)
def test_a_hostile_proposed_repo_runs_nothing_and_shows_the_true_diff(
    scene: Scene, attacks: Attacks, what: str
) -> None:
    ref, succeeded = VECTORS[what](scene)
    assert not scene.marker.exists(), "the scene itself ran the manager's command"
    outcome = scene.propose(ref)
    attacks.record(f"{what}: a command of the manager's ran as the spawner", succeeded=scene.marker.exists())
    attacks.record(f"{what}: shaped what the operator saw or what was evaluated", succeeded=succeeded(scene, outcome))
    if outcome.frozen is not None and outcome.evaluated is not None:
        blob = git(scene.repos.applied("alice"), "cat-file", "blob", f"{outcome.frozen.sha}:agent.nix")
        attacks.record(
            f"{what}: evaluated other bytes than the frozen blob",
            succeeded=outcome.evaluated.decode(errors="replace").strip() != blob,
        )
    attacks.none_succeeded()


@pytest.mark.parametrize(
    "ref",
    [
        "--upload-pack=touch /tmp/x",
        "../..",
        "HEAD",
        "main",
        "-c",
        "refs/heads/main",
        "@{-1}",
        ":/typo",
        "a" * 41,
        "HEAD~1",
        "abc",
        "0" * 40 + "\n",
        " " + "0" * 39,
    ],
)
def test_refs_that_are_not_commit_ids_are_refused(scene: Scene, attacks: Attacks, ref: str) -> None:
    outcome = scene.propose(ref)
    attacks.record(f"ref {ref!r} accepted", succeeded=outcome.frozen is not None or not outcome.refused)
    attacks.none_succeeded()
