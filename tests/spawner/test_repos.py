"""Config repos and policy evaluation with real git and real nix-instantiate."""

import os
import shutil
import zlib
from pathlib import Path

import pytest

from hive_spawner.evaluate import evaluate
from hive_spawner.repos import ConfigRepos, git
from hyperhive.wire.errors import ErrorCode, HiveError


@pytest.fixture
def repos(tmp_path: Path) -> ConfigRepos:
    return ConfigRepos(tmp_path / "config")


def commit(repos: ConfigRepos, name: str, agent_nix: str, message: str = "change") -> str:
    proposed = repos.proposed(name)
    (proposed / "agent.nix").write_text(agent_nix)
    git(proposed, "commit", "-q", "-am", message)
    return git(proposed, "rev-parse", "HEAD")


def test_a_new_agent_gets_repos_whose_template_evaluates(repos: ConfigRepos) -> None:
    first = repos.create("alice")
    frozen = repos.freeze("alice", first[:7], approval_id=1)
    assert (frozen.sha, frozen.tag) == (first, "proposal/1")
    assert "+++ b/agent.nix" in frozen.diff
    with repos.checkout("alice", frozen.tag, frozen.sha) as files:
        policy = evaluate(files, "alice")
    assert (policy.agent, policy.model, policy.allowed_recipients, policy.notes_threshold) == (
        "alice",
        "claude-sonnet-4-5",
        ["manager"],
        16384,
    )


def test_what_is_applied_is_exactly_what_was_frozen(repos: ConfigRepos) -> None:
    repos.create("alice")
    wanted = commit(repos, "alice", '{...}: { hyperhive.model = "claude-opus-4"; }')
    frozen = repos.freeze("alice", wanted, approval_id=7)
    commit(repos, "alice", '{...}: { hyperhive.model = "something-else"; }', "moved on")

    with repos.checkout("alice", frozen.tag, frozen.sha) as files:
        assert evaluate(files, "alice").model == "claude-opus-4"
    repos.apply("alice", frozen.tag, frozen.sha)
    assert git(repos.applied("alice"), "rev-parse", "HEAD") == wanted

    later = repos.freeze("alice", git(repos.proposed("alice"), "rev-parse", "HEAD"), approval_id=8)
    assert '-{...}: { hyperhive.model = "claude-opus-4"; }' in later.diff  # diffed against what is applied


def test_the_frozen_tag_is_the_spawners_and_a_mismatched_command_is_refused(repos: ConfigRepos) -> None:
    repos.create("alice")
    wanted = commit(repos, "alice", '{...}: { hyperhive.model = "a"; }')
    frozen = repos.freeze("alice", wanted, approval_id=3)
    other = commit(repos, "alice", '{...}: { hyperhive.model = "b"; }')
    git(repos.proposed("alice"), "tag", "-f", "proposal/3", other)  # the manager's own tag moves nothing
    with repos.checkout("alice", frozen.tag, frozen.sha) as files:
        assert evaluate(files, "alice").model == "a"
    with pytest.raises(HiveError) as err, repos.checkout("alice", frozen.tag, other):
        pass
    assert err.value.code == ErrorCode.CONFLICT
    with pytest.raises(HiveError) as err:
        repos.apply("alice", frozen.tag, other)
    assert err.value.code == ErrorCode.CONFLICT
    with pytest.raises(HiveError) as err:
        repos.freeze("alice", other, approval_id=3)  # one approval freezes one commit
    assert err.value.code == ErrorCode.CONFLICT
    assert git(repos.applied("alice"), "rev-parse", "--verify", "--quiet", "HEAD", check=False) == ""


@pytest.mark.parametrize("ref", ["abc", "ABCDEF1", "x" * 8, "a" * 41, "HEAD", "main", "../../etc"])
def test_refs_that_are_not_commit_ids_are_refused(repos: ConfigRepos, ref: str) -> None:
    repos.create("alice")
    with pytest.raises(HiveError) as err:
        repos.freeze("alice", ref, approval_id=1)
    assert err.value.code == ErrorCode.INVALID_REQUEST


def test_an_unknown_commit_is_not_found(repos: ConfigRepos) -> None:
    repos.create("alice")
    with pytest.raises(HiveError) as err:
        repos.freeze("alice", "deadbeef", approval_id=1)
    assert err.value.code == ErrorCode.NOT_FOUND


@pytest.mark.parametrize("name", ["..", "a/b", "ALICE", "twentycharacterslong", "аlice", "manager/../x"])
def test_bad_names_are_refused_before_any_filesystem_access(repos: ConfigRepos, tmp_path: Path, name: str) -> None:
    with pytest.raises(HiveError) as err:
        repos.create(name)
    assert err.value.code == ErrorCode.INVALID_NAME
    assert not (tmp_path / "config").exists()


@pytest.mark.parametrize(
    ("agent_nix", "says"),
    [
        ("{...}: { hyperhive = ", "does not evaluate"),
        ('{...}: { hyperhive.allowedRecipients = "bob"; }', "hyperhive.allowedRecipients"),
        ('{...}: { hyperhive.allowedRecipients = [ "../x" ]; }', "hyperhive.allowedRecipients"),
        ("{...}: { hyperhive.model = builtins.readFile /etc/hostname; }", "forbidden in restricted mode"),
        ('{...}: { hyperhive.notesThreshold = "big"; }', "hyperhive.notesThreshold"),
    ],
)
def test_an_agent_nix_that_does_not_evaluate_or_validate_names_the_problem(
    repos: ConfigRepos, agent_nix: str, says: str
) -> None:
    repos.create("alice")
    frozen = repos.freeze("alice", commit(repos, "alice", agent_nix), approval_id=1)
    with pytest.raises(HiveError) as err, repos.checkout("alice", frozen.tag, frozen.sha) as files:
        evaluate(files, "alice")
    assert err.value.code == ErrorCode.INVALID_REQUEST
    assert says in err.value.message


def test_objects_the_spawner_cannot_account_for_are_refused_with_a_sentence(repos: ConfigRepos) -> None:
    """A FIFO (a read that would never end), a symlink (to a host file), an object whose content is not its name."""
    head = repos.create("alice")
    objects = repos.proposed("alice") / ".git" / "objects"
    odd = objects / "ab" / ("c" * 38)
    odd.parent.mkdir(exist_ok=True)
    for make, says in [
        (os.mkfifo, "is not a regular file"),
        (lambda p: p.symlink_to("/etc/shadow"), "is not a regular file"),
        (lambda p: p.write_bytes(zlib.compress(b"blob 1\0x")), "is not what its name says"),
        (lambda p: p.write_bytes(b"not zlib"), "is not zlib data"),
    ]:
        make(odd)
        with pytest.raises(HiveError) as err:
            repos.freeze("alice", head, approval_id=1)
        assert (err.value.code, says in err.value.message) == (ErrorCode.INVALID_REQUEST, True), err.value.message
        odd.unlink()
    assert repos.freeze("alice", head, approval_id=1).sha == head


def test_a_packed_repo_freezes_and_its_head_is_read_from_packed_refs(repos: ConfigRepos) -> None:
    repos.create("alice")
    wanted = commit(repos, "alice", '{...}: { hyperhive.model = "packed"; }')
    git(repos.proposed("alice"), "gc", "-q", "--prune=now")
    assert not list((repos.proposed("alice") / ".git" / "refs" / "heads").iterdir())  # HEAD's ref is packed
    assert repos.head("alice") == wanted
    frozen = repos.freeze("alice", wanted[:9], approval_id=1)
    with repos.checkout("alice", frozen.tag, frozen.sha) as files:
        assert evaluate(files, "alice").model == "packed"


def test_a_commit_with_a_symlink_or_an_oversized_file_is_refused_at_request_time(repos: ConfigRepos) -> None:
    repos.create("alice")
    proposed = repos.proposed("alice")
    (proposed / "notes.md").unlink()
    (proposed / "notes.md").symlink_to("/etc/shadow")
    git(proposed, "add", "-A")
    git(proposed, "commit", "-q", "-m", "link")
    with pytest.raises(HiveError) as err:
        repos.freeze("alice", git(proposed, "rev-parse", "HEAD"), approval_id=1)
    assert "notes.md is a symlink" in err.value.message
    (proposed / "notes.md").unlink()
    (proposed / "notes.md").write_text("x" * (2 << 20))
    git(proposed, "add", "-A")
    git(proposed, "commit", "-q", "-m", "big")
    with pytest.raises(HiveError) as err:
        repos.freeze("alice", git(proposed, "rev-parse", "HEAD"), approval_id=2)
    assert "notes.md is over the size" in err.value.message


def test_a_gitdir_file_is_not_followed(repos: ConfigRepos, tmp_path: Path) -> None:
    head = repos.create("alice")
    dot_git = repos.proposed("alice") / ".git"
    dot_git.rename(tmp_path / "elsewhere")
    dot_git.write_text(f"gitdir: {tmp_path / 'elsewhere'}\n")
    with pytest.raises(HiveError) as err:
        repos.freeze("alice", head, approval_id=1)
    assert "symlinks and gitdir files are not followed" in err.value.message


def test_the_spawner_runs_no_git_in_a_repo_another_uid_owns(repos: ConfigRepos) -> None:
    head = repos.create("alice")
    proposed = repos.proposed("alice")
    if os.geteuid() != 0:  # a user cannot hand a repo to another uid; a folder root owns is one it cannot write
        with pytest.raises(HiveError) as err:
            git(Path("/"), "log")
        assert "another uid owns it" in err.value.message
        return
    for path in [proposed, *proposed.rglob("*")]:
        os.chown(path, 200999, 200999, follow_symlinks=False)
    assert git(proposed, "rev-parse", "HEAD") == head  # read from the files
    with pytest.raises(HiveError) as err:
        git(proposed, "log")
    assert "another uid owns it" in err.value.message
    assert repos.freeze("alice", head, approval_id=1).sha == head


def test_repos_a_killed_spawner_left_half_made_are_finished_by_the_next_create(repos: ConfigRepos) -> None:
    """What a spawner killed inside `create` left: a scratch build, or (before repos were moved in whole) a proposed
    repo beside an applied folder git was never run in — whose every freeze then failed for good."""
    first = repos.create("alice")
    shutil.rmtree(repos.applied("alice") / ".git")  # an applied folder that was made but never initialised
    (repos.root / ".new-applied-bob" / "junk").mkdir(parents=True)  # a scratch build of bob's, killed

    assert repos.create("alice") == first  # finished, not refused
    assert repos.freeze("alice", first, approval_id=1).sha == first
    repos.create("bob")
    assert [p.name for p in repos.root.iterdir() if p.name.startswith(".")] == []


def test_a_ref_lock_a_killed_git_left_is_cleared_before_the_next_spawner_applies(repos: ConfigRepos) -> None:
    """git holds `<ref>.lock` while it moves a ref; killed there, it leaves the lock, which refused every later
    apply of that agent."""
    first = repos.create("alice")
    frozen = repos.freeze("alice", first, approval_id=1)
    lock = repos.applied("alice") / ".git" / "refs" / "heads" / "main.lock"
    lock.write_text(first + "\n")
    with pytest.raises(HiveError) as refused:
        repos.apply("alice", frozen.tag, frozen.sha)
    assert refused.value.code == ErrorCode.INVALID_REQUEST

    assert ConfigRepos(repos.root).clear_stale_locks() == [lock]  # a starting spawner's
    repos.apply("alice", frozen.tag, frozen.sha)
    assert repos.applied_head("alice") == first
