"""Agents' state dirs and host uids (allocated once per agent, kept in a small JSON file next to the state dirs),
shared by both backends."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from hyperhive import credential
from hyperhive.files import write_atomic
from hyperhive.wire.names import MANAGER, check_agent_ref

POLICY_IN_SANDBOX = "/run/hive"
POLICY_FILE = "policy.json"


class Uids:
    """`base + step * k` for the k-th agent: step 1 for single uids (local), 65536 for user-namespace ranges
    (nixos-container with PrivateUsers)."""

    def __init__(self, registry: Path, *, base: int, step: int) -> None:
        self.registry = registry
        self.base = base
        self.step = step
        self._lock = threading.Lock()  # the spawner's threads ask at once; two agents must never get one uid

    def of(self, name: str) -> int:
        with self._lock:
            uids: dict[str, int] = json.loads(self.registry.read_text()) if self.registry.exists() else {}
            if check_agent_ref(name) not in uids:
                uids[name] = max(uids.values(), default=self.base) + self.step
                write_atomic(self.registry, json.dumps(uids, indent=2))
            return uids[name]

    def forget(self, name: str) -> None:
        with self._lock:
            if self.registry.exists():
                uids = json.loads(self.registry.read_text())
                uids.pop(name, None)
                write_atomic(self.registry, json.dumps(uids, indent=2))


def own(folder: Path, uid: int) -> None:
    """`folder` and everything in it belong to `uid` (what is root inside the agent's sandbox); a new folder is
    made 0700, an existing one keeps its mode. Without root there is nobody else to give it to."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    if os.geteuid() == 0:
        for path in [folder, *folder.rglob("*")]:
            os.chown(path, uid, uid, follow_symlinks=False)


class AgentDirs:
    """Where each agent's state dir is and which host uid owns it. The manager also owns every agent's proposed repo,
    which it edits at /agents."""

    def __init__(self, state_root: Path, proposed_root: Path | None, *, base: int, step: int) -> None:
        self.state_root = state_root
        self.proposed_root = proposed_root
        self.uids = Uids(state_root / ".uids.json", base=base, step=step)

    def state_dir(self, name: str) -> Path:
        return self.state_root / check_agent_ref(name)

    def uid(self, name: str) -> int:
        return self.uids.of(name)

    def prepare(self, name: str) -> Path:
        """The agent's state dir, owned by its uid (what is root inside), mode 0700."""
        state = self.state_dir(name)
        own(state, self.uid(name))
        if name == MANAGER and self.proposed_root is not None:
            own(self.proposed_root, self.uid(name))
        return state

    def policy_dir(self, name: str) -> Path:
        """Where the agent's applied policy is handed to its harness, bound read-only at `POLICY_IN_SANDBOX`."""
        return self.state_root / ".policy" / check_agent_ref(name)

    def hand_over_policy(self, name: str, text: str) -> None:
        """Write the policy its harness enforces where the agent can read it and never change it: root owns the
        folder and the file, the agent's group may read them, nobody else may (not even list the folder), and the
        sandbox sees it only through a read-only bind."""
        self._hand_over(name, POLICY_FILE, text)

    def hand_over_credential(self, name: str, token: str | None) -> None:
        """The hive's Anthropic credential, beside the policy and kept as it is; None takes it away. Its harness
        reads it at every turn, so a new one reaches a running agent."""
        if token is not None:
            self._hand_over(name, credential.FILE, token)
        else:
            (self.policy_folder(name) / credential.FILE).unlink(missing_ok=True)

    def _hand_over(self, name: str, file: str, text: str) -> None:
        folder = self.policy_folder(name)
        new = folder / f".{file}.new"
        new.unlink(missing_ok=True)
        new.touch(mode=0o600)  # never readable by others, not even before it is restricted
        self._restrict(name, new, 0o640)
        new.write_text(text)
        os.replace(new, folder / file)  # whole, and with its owner and mode, from the first moment it is there

    def policy_folder(self, name: str) -> Path:
        """The agent's policy folder, made when missing (a sandbox binds it even before a policy is handed over:
        the harness then denies every Bash call)."""
        folder = self.policy_dir(name)
        folder.parent.mkdir(mode=0o711, parents=True, exist_ok=True)
        folder.mkdir(mode=0o750, exist_ok=True)
        self._restrict(name, folder, 0o750)
        return folder

    def _restrict(self, name: str, path: Path, mode: int) -> None:
        if os.geteuid() == 0:
            os.chown(path, 0, self.uid(name))
        path.chmod(mode)

    def grant_manager(self, repo: Path) -> None:
        """A new proposed repo is the manager's to edit too."""
        own(repo, self.uid(MANAGER))
