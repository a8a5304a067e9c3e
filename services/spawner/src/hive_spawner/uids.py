"""Host uids of agents, allocated once per agent and kept in a small JSON file next to their state dirs."""

from __future__ import annotations

import json
import os
from pathlib import Path

from hyperhive.identity import write_atomic
from hyperhive.wire.names import check_agent_ref


class Uids:
    """`base + step * k` for the k-th agent: step 1 for single uids (local), 65536 for user-namespace ranges
    (nixos-container with PrivateUsers)."""

    def __init__(self, registry: Path, *, base: int, step: int) -> None:
        self.registry = registry
        self.base = base
        self.step = step

    def of(self, name: str) -> int:
        uids: dict[str, int] = json.loads(self.registry.read_text()) if self.registry.exists() else {}
        if check_agent_ref(name) not in uids:
            uids[name] = max(uids.values(), default=self.base) + self.step
            write_atomic(self.registry, json.dumps(uids, indent=2))
        return uids[name]

    def forget(self, name: str) -> None:
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
