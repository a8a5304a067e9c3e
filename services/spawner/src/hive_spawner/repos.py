"""Per agent, two git repos on the host: `proposed/<name>` (the manager writes it) and `applied/<name>` (only the
spawner writes it).

A proposed repo is untrusted data (decision 0009): its config, hooks, attributes, alternates, replace refs, grafts and
symlinks are the manager's, so git never runs in it. Freezing reads its object files (regular files only, bounded,
never following a symlink), checks each loose object's hash, re-indexes each pack with `git index-pack`, all into a
fresh quarantine repo of the spawner's, and fetches the one commit from there into the applied repo (with
`transfer.fsckObjects`). The tag `proposal/<id>` lives in the applied repo, out of the manager's reach; the diff the
operator sees, the checkout that is evaluated and what is applied come from those objects alone, with the spawner's
own git configuration (`gitconfig`).

It is long because reading a repo without git means checking every kind of object git would have taken on trust.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import tempfile
import unicodedata
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.names import check_agent_ref

COMMIT_REF = re.compile(r"[0-9a-f]{7,40}")
SHA = re.compile(rb"[0-9a-f]{40}")
EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
HERE = Path(__file__).parent
MAX_STORE_FILES = 10_000  # object files read from a proposed repo
MAX_STORE_BYTES = 64 << 20  # their total size
MAX_OBJECT_BYTES = 8 << 20  # one loose object, inflated
MAX_TREE_FILES = 100  # files in a config commit
MAX_FILE_BYTES = 1 << 20  # one file of a config commit
MAX_TREE_BYTES = 4 << 20  # all of them
GIT_MEMORY = 1 << 30  # address space of each git process (an inflating pack cannot take the host's memory)
GIT_TIMEOUT = 60
# Every choice a diff makes, spelled out: no external diff or textconv, every file as text, no renames.
DIFF_OPTIONS = (
    "--no-ext-diff",
    "--no-textconv",
    "--no-color",
    "--no-renames",
    "--text",
    "--unified=3",
    "--diff-algorithm=myers",
    "--src-prefix=a/",
    "--dst-prefix=b/",
)
OBJECT_TYPES = (b"blob", b"tree", b"commit", b"tag")
REGULAR = {b"100644", b"100755"}
KINDS = {b"120000": "a symlink", b"160000": "a submodule", b"040000": "a directory"}
SYMREF = re.compile(r"ref: (refs/heads/(?:[A-Za-z0-9_-][A-Za-z0-9._-]*/)*[A-Za-z0-9_-][A-Za-z0-9._-]*)\n?")


def git_env() -> dict[str, str]:
    """No configuration but `gitconfig` beside this file: no system or user file, no attributes, no replace refs, no
    prompt, and none of the caller's GIT_* variables."""
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("GIT_")},
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": str(HERE / "gitconfig"),
        "GIT_ATTR_NOSYSTEM": "1",
        "GIT_NO_REPLACE_OBJECTS": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PAGER": "cat",
        "HOME": str(HERE),
        "XDG_CONFIG_HOME": str(HERE),
    }


def run_git(repo: Path, *args: str, stdin: bytes | None = None) -> bytes:
    """git in one of the spawner's own repos, hardened and bounded in memory and time; a failure names the repo."""
    hardened = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"]
    argv = ["prlimit", f"--as={GIT_MEMORY}", "--", "git", *hardened, "-C", str(repo), *args]
    try:
        # Never a repo above `repo`: a folder that is not (yet) a repo must fail, not run git in whatever encloses it.
        env = {**git_env(), "GIT_CEILING_DIRECTORIES": str(repo.parent)}
        done = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=GIT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise HiveError(ErrorCode.INVALID_REQUEST, f"git {args[0]} took over {GIT_TIMEOUT}s in {repo.name}.") from None
    if done.returncode != 0:
        stderr = done.stderr.decode(errors="replace").strip()
        raise HiveError(ErrorCode.INVALID_REQUEST, f"git {args[0]} failed in {repo.name}: {stderr[:500]}")
    return done.stdout


def git(repo: Path, *args: str, check: bool = True) -> str:
    """git in a repo of the spawner's own, as text. A repo another uid owns (the manager's proposed repos) is never
    run git in: its `rev-parse HEAD` is read from the files (`read_head`), anything else is refused."""
    if repo.exists() and repo.lstat().st_uid != os.geteuid():
        if args == ("rev-parse", "HEAD"):
            return read_head(repo)
        raise HiveError(ErrorCode.INVALID_REQUEST, f"The spawner runs no git in {repo.name}: another uid owns it.")
    try:
        return run_git(repo, *args).decode(errors="replace").strip()
    except HiveError:
        if check:
            raise
        return ""


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

    def create(self, name: str, *, grant: Callable[[Path], None] | None = None) -> str:
        """An agent's repos, made or finished: an empty applied repo, then a proposed repo from the template (one
        commit), given to the manager by `grant`; return the proposed repo's HEAD.

        Each repo is built in a scratch folder of the spawner's and renamed into place whole, the proposed one last:
        a kill at any point leaves no half-made repo in place, an agent (its proposed repo) always has its applied
        repo, and calling this again finishes what a killed call began. The proposed repo is given away only
        there, before it is moved in: the manager owns `proposed/`, so git never runs in a directory it could swap."""
        self._place(self.applied(name), lambda new: run_git(new, "init", "-q", "--template=", "-b", "main"))
        self._place(self.proposed(name), lambda new: self._from_template(new, name, grant))
        return read_head(self.proposed(name))

    def _place(self, repo: Path, build: Callable[[Path], object]) -> None:
        """`repo` built by `build` in a scratch folder and renamed into place, unless it is a repo already; what is
        there without `.git` (the folder of a build an earlier spawner did not finish) is replaced."""
        if (repo / ".git").is_dir():
            return
        scratch = self.root / f".new-{repo.parent.name}-{repo.name}"  # a fixed name: a killed build is redone
        for leftover in (scratch, repo):
            shutil.rmtree(leftover, ignore_errors=True)
        scratch.mkdir(parents=True)
        build(scratch)
        repo.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(scratch, repo)
        except OSError as exc:  # something else took the name meanwhile (the manager owns proposed/)
            shutil.rmtree(scratch, ignore_errors=True)
            raise HiveError(ErrorCode.CONFLICT, f"{repo.parent.name}/{repo.name} is taken ({exc}).") from None

    @staticmethod
    def _from_template(new: Path, name: str, grant: Callable[[Path], None] | None) -> None:
        run_git(new, "init", "-q", "--template=", "-b", "main")
        template = resources.files("hive_spawner") / "template"
        for item in template.iterdir():
            if item.is_file():
                (new / item.name).write_text(item.read_text())
        run_git(new, "add", "-A")
        run_git(new, "commit", "-q", "-m", f"{name}: from the template")
        new.chmod(0o755)
        if grant is not None:
            grant(new)

    def exists(self, name: str) -> bool:
        return self.proposed(name).is_dir()

    def applied_head(self, name: str) -> str | None:
        """The applied commit, read from the applied repo's files: no git process (listing agents reads every
        agent's)."""
        try:
            return read_head(self.applied(name))
        except (HiveError, OSError):
            return None

    def clear_stale_locks(self) -> list[Path]:
        """Remove the lock files a killed git left in applied repos (git takes `<ref>.lock` while it updates a ref
        and removes it when done, unless it is killed): each would refuse every later update of its ref. Only for a
        spawner that is starting, before it runs git; an orphaned git of a killed spawner that still runs just
        fails its update, which the command's next run makes again."""
        applied = self.root / "applied"
        locks = sorted([*applied.glob("*/.git/*.lock"), *applied.glob("*/.git/refs/**/*.lock")])
        for lock in locks:
            lock.unlink(missing_ok=True)
        return locks

    def head(self, name: str) -> str:
        """The commit the proposed repo's HEAD names, read from its files (no git runs there)."""
        return read_head(self.proposed(name))

    def freeze(self, name: str, ref: str, approval_id: int) -> Frozen:
        """Copy commit `ref` of the proposed repo into the applied repo as tag `proposal/<approval_id>`, and diff it
        against what is applied."""
        if not COMMIT_REF.fullmatch(ref):
            raise HiveError(ErrorCode.INVALID_REQUEST, f"{ref!r} is not a commit id (7-40 lowercase hex).")
        if not self.exists(name):
            raise HiveError(ErrorCode.NOT_FOUND, f"Agent {name!r} has no proposed repo.")
        applied, tag = self.applied(name), proposal_tag(approval_id)
        with tempfile.TemporaryDirectory(prefix="hive-quarantine-") as tmp:
            quarantine = Path(tmp)
            run_git(quarantine, "init", "-q", "--bare", "--template=")
            import_objects(self.proposed(name), quarantine)
            try:
                sha = run_git(quarantine, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}").decode().strip()
            except HiveError:
                raise HiveError(ErrorCode.NOT_FOUND, f"{ref} is not a commit of {name}'s proposed repo.") from None
            files_of(quarantine, sha)  # a commit the spawner would not check out is refused now, not at approval
            existing = self.tagged(name, tag)
            if existing and existing != sha:
                raise HiveError(ErrorCode.CONFLICT, f"Tag {tag} already freezes another commit ({existing[:12]}).")
            if not existing:
                fetch = ["fetch", "-q", "--no-tags", "--no-write-fetch-head"]
                run_git(applied, *fetch, str(quarantine), f"{sha}:refs/tags/{tag}")
        base = self.applied_head(name) or EMPTY_TREE
        diff = run_git(applied, "diff", *DIFF_OPTIONS, base, sha, "--")
        return Frozen(sha=sha, tag=tag, diff=visible(diff.decode(errors="backslashreplace")))

    def tagged(self, name: str, tag: str) -> str:
        """The commit `tag` freezes in the applied repo, or ""."""
        return git(self.applied(name), "rev-parse", "--verify", "--quiet", f"refs/tags/{tag}^{{commit}}", check=False)

    def _frozen(self, name: str, tag: str, sha: str) -> None:
        if self.tagged(name, tag) != sha:
            raise HiveError(ErrorCode.CONFLICT, f"Tag {tag} of {name} does not name the frozen commit {sha[:12]}.")

    @contextmanager
    def checkout(self, name: str, tag: str, sha: str) -> Iterator[Path]:
        """The frozen commit's files in a temporary directory, after checking the tag names `sha`."""
        self._frozen(name, tag, sha)
        with extract(self.applied(name), sha) as files:
            yield files

    @contextmanager
    def checkout_applied(self, name: str) -> Iterator[Path]:
        """The applied commit's files in a temporary directory (to revive an agent, to render its container)."""
        sha = self.applied_head(name)
        if not sha:
            raise HiveError(ErrorCode.NOT_FOUND, f"Agent {name!r} has no applied config.")
        with extract(self.applied(name), sha) as files:
            yield files

    def apply(self, name: str, tag: str, sha: str) -> None:
        """Make the frozen commit the applied one. Only call after it evaluated cleanly: nothing is half applied."""
        self._frozen(name, tag, sha)
        git(self.applied(name), "update-ref", "refs/heads/main", sha)
        git(self.applied(name), "symbolic-ref", "HEAD", "refs/heads/main")


def proposal_tag(approval_id: int) -> str:
    """The tag that freezes approval `approval_id`'s commit in an applied repo."""
    return f"proposal/{approval_id}"


def visible(text: str) -> str:
    """Control and format characters (escapes, carriage returns, bidi overrides) written out, so what the operator's
    terminal shows is what the objects hold."""
    return "".join(
        c if c in "\n\t" or unicodedata.category(c) not in ("Cc", "Cf") else f"\\u{{{ord(c):04x}}}" for c in text
    )


# ── reading a proposed repo's files: never through a symlink, only regular files, bounded ──


def refuse(repo: Path, why: str) -> HiveError:
    return HiveError(ErrorCode.INVALID_REQUEST, f"The proposed repo {repo.name} is refused: {why}.")


def open_dir(parent: int | None, name: str | Path) -> int:
    return os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent)


def read_regular(directory: int, name: str, limit: int, repo: Path) -> bytes:
    """The bytes of `name` in `directory` if it is a regular file (not a symlink, FIFO or device) of at most `limit`."""
    before = os.stat(name, dir_fd=directory, follow_symlinks=False)
    if not stat.S_ISREG(before.st_mode):
        raise refuse(repo, f"{name} is not a regular file")
    if before.st_size > limit:
        raise refuse(repo, f"{name} is larger than {limit} bytes")
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=directory)
    with os.fdopen(fd, "rb") as f:
        if os.fstat(f.fileno()).st_ino != before.st_ino:
            raise refuse(repo, f"{name} changed while it was read")
        data = f.read(limit + 1)
    if len(data) > limit:
        raise refuse(repo, f"{name} is larger than {limit} bytes")
    return data


@contextmanager
def git_dir(repo: Path, *below: str) -> Iterator[int]:
    """An fd of `repo/.git/<below…>`, each step refusing a symlink (a `.git` file, `gitdir:` or `commondir` is not
    followed: a repo whose objects live elsewhere is not the manager's to propose)."""
    fds = [open_dir(None, repo.parent)]
    try:
        for step in (repo.name, ".git", *below):
            try:
                fds.append(open_dir(fds[-1], step))
            except FileNotFoundError:
                raise refuse(repo, f"it has no {step} directory") from None
            except OSError:
                raise refuse(repo, f"{step} is not a directory (symlinks and gitdir files are not followed)") from None
        yield fds[-1]
    finally:
        for fd in fds:
            os.close(fd)


def import_objects(repo: Path, quarantine: Path) -> None:
    """Every loose object and pack of `repo` into the bare `quarantine`: a loose object only if its content hashes to
    its name, a pack only through `git index-pack` (which checks every object). Alternates, replace refs, grafts,
    shallow, commit-graphs and indexes of theirs are not read."""
    budget = Budget(repo)
    with git_dir(repo, "objects") as objects:
        for entry in sorted(os.listdir(objects)):
            if re.fullmatch(r"[0-9a-f]{2}", entry):
                fan = open_dir(objects, entry)
                try:
                    for rest in sorted(os.listdir(fan)):
                        if re.fullmatch(r"[0-9a-f]{38}", rest):
                            raw = inflate(entry + rest, budget.read(fan, rest), repo)
                            target = quarantine / "objects" / entry / rest
                            target.parent.mkdir(exist_ok=True)
                            target.write_bytes(zlib.compress(raw))
                finally:
                    os.close(fan)
        if "pack" in os.listdir(objects):
            packs = open_dir(objects, "pack")
            try:
                for pack in sorted(p for p in os.listdir(packs) if re.fullmatch(r"pack-[0-9a-f]{40,64}\.pack", p)):
                    run_git(quarantine, "index-pack", "--stdin", stdin=budget.read(packs, pack))
            finally:
                os.close(packs)


class Budget:
    """How many object files, and bytes, may still be read from one proposed repo."""

    def __init__(self, repo: Path) -> None:
        self.repo, self.files, self.bytes = repo, MAX_STORE_FILES, MAX_STORE_BYTES

    def read(self, directory: int, name: str) -> bytes:
        self.files -= 1
        if self.files < 0:
            raise refuse(self.repo, f"it holds more than {MAX_STORE_FILES} object files")
        data = read_regular(directory, name, self.bytes, self.repo)
        self.bytes -= len(data)
        return data


def inflate(name: str, compressed: bytes, repo: Path) -> bytes:
    """A loose object's `<type> <size>\\0<content>`, checked: a known type, the right size, the hash of its name."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(compressed, MAX_OBJECT_BYTES + 64)
    except zlib.error:
        raise refuse(repo, f"object {name} is not zlib data") from None
    header, _, body = raw.partition(b"\0")
    kind, _, size = header.partition(b" ")
    if not inflater.eof or inflater.unconsumed_tail:
        raise refuse(repo, f"object {name} is truncated or larger than {MAX_OBJECT_BYTES} bytes")
    named = hashlib.sha1(raw).hexdigest()  # noqa: S324 git's own names (index-pack checks again, with sha1dc)
    if kind not in OBJECT_TYPES or size != str(len(body)).encode() or named != name:
        raise refuse(repo, f"object {name} is not what its name says")
    return raw


def read_head(repo: Path) -> str:
    """The commit `repo`'s HEAD names, from `.git/HEAD` and its loose or packed ref: a 40-hex id or NOT_FOUND."""
    with git_dir(repo) as dot_git:
        head = read_regular(dot_git, "HEAD", 4096, repo).decode(errors="replace")
        symref = SYMREF.fullmatch(head)
        if symref is None:
            sha = head.strip()
        else:
            ref = symref.group(1)
            sha = read_loose_ref(dot_git, ref.split("/"), repo) or packed_ref(dot_git, ref, repo)
    if not SHA.fullmatch(sha.encode()):
        raise HiveError(ErrorCode.NOT_FOUND, f"HEAD of {repo.name}'s proposed repo names no commit.")
    return sha


def read_loose_ref(dot_git: int, parts: list[str], repo: Path) -> str:
    fds: list[int] = []
    try:
        for part in parts[:-1]:
            fds.append(open_dir(fds[-1] if fds else dot_git, part))
        return read_regular(fds[-1], parts[-1], 4096, repo).decode(errors="replace").strip()
    except FileNotFoundError:
        return ""
    finally:
        for fd in fds:
            os.close(fd)


def packed_ref(dot_git: int, ref: str, repo: Path) -> str:
    try:
        packed = read_regular(dot_git, "packed-refs", 1 << 20, repo).decode(errors="replace")
    except FileNotFoundError:
        return ""
    return next((line[:40] for line in packed.splitlines() if line[41:] == ref), "")


# ── checking out a commit of the spawner's own repo ──


def files_of(repo: Path, sha: str) -> list[tuple[list[str], str]]:
    """`sha`'s files as (path parts, blob id), checked: regular files only (a symlink or submodule is refused, as is a
    path with `..` or `.git` in it), at most MAX_TREE_FILES of MAX_FILE_BYTES each, MAX_TREE_BYTES in all."""
    listing = run_git(repo, "ls-tree", "-r", "-z", "-l", "--full-tree", sha).split(b"\0")[:-1]
    if len(listing) > MAX_TREE_FILES:
        raise HiveError(ErrorCode.INVALID_REQUEST, f"Commit {sha[:12]} holds more than {MAX_TREE_FILES} files.")
    files, total = [], 0
    for entry in listing:
        meta, _, raw_path = entry.partition(b"\t")
        mode, _, oid, size = meta.split()
        path = raw_path.decode(errors="backslashreplace")
        if mode not in REGULAR:
            kind = KINDS.get(mode, "not a regular file")
            raise HiveError(ErrorCode.INVALID_REQUEST, f"Commit {sha[:12]}: {path} is {kind}; only regular files.")
        parts = path.split("/")
        if any(p in ("", ".", "..") or p.lower() == ".git" for p in parts):
            raise HiveError(ErrorCode.INVALID_REQUEST, f"Commit {sha[:12]}: the path {path!r} is refused.")
        total += int(size)
        if int(size) > MAX_FILE_BYTES or total > MAX_TREE_BYTES:
            raise HiveError(
                ErrorCode.INVALID_REQUEST,
                f"Commit {sha[:12]}: {path} is over the size a config "
                f"commit may have ({MAX_FILE_BYTES} bytes a file, {MAX_TREE_BYTES} in all).",
            )
        files.append((parts, oid.decode()))
    return files


@contextmanager
def extract(repo: Path, sha: str) -> Iterator[Path]:
    """`sha`'s files (`files_of`), written by the spawner into a fresh directory."""
    files = files_of(repo, sha)
    tmp = Path(tempfile.mkdtemp(prefix="hive-config-"))
    try:
        for parts, oid in files:
            target = tmp.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as out:
                out.write(run_git(repo, "cat-file", "blob", oid))
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
