"""What the spawner needs of a container backend, and which one a hive uses: `local` (bubblewrap, `local.py`) or
`nixos` (nixos-container, `nixos.py`)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol

from hive_spawner.dirs import Uids
from hive_spawner.local import LocalBackend
from hive_spawner.nixos import NixosBackend
from hive_spawner.repos import ConfigRepos
from hive_spawner.settings import SpawnerSettings


class Backend(Protocol):
    """What the spawner needs of a container backend (local: bubblewrap; nixos: nixos-container)."""

    uids: Uids

    def state_dir(self, name: str) -> Path: ...
    def uid(self, name: str) -> int: ...
    def prepare(self, name: str) -> Path: ...
    def start(self, name: str, command: Sequence[str], env: Mapping[str, str]) -> None: ...
    def stop(self, name: str) -> None: ...
    def stop_all(self) -> None: ...
    def running(self, *names: str) -> set[str]: ...
    def journal(self, name: str, lines: int) -> list[str]: ...
    def destroy(self, name: str) -> None: ...
    def grant_manager(self, repo: Path) -> None: ...
    def hand_over_policy(self, name: str, text: str) -> None: ...
    def hand_over_credential(self, name: str, token: str | None) -> None: ...
    def reap_orphans(self) -> list[str]: ...


def make_backend(
    settings: SpawnerSettings, state_root: Path, repos: ConfigRepos, on_exit: Callable[[str, int | None], None]
) -> Backend:
    """The backend `settings.backend` names; `on_exit` hears of an exit nobody asked for, from the backend's thread."""
    if settings.backend == "nixos":
        return NixosBackend(
            state_root,
            repos,
            containers_root=settings.containers_dir or settings.state_dir / "containers",
            conf_dir=settings.nixos_conf_dir,
            cpu_quota=settings.cpu_quota,
            memory_max=settings.memory_max,
            flake=settings.nixos_flake,
            on_exit=on_exit,
        )
    return LocalBackend(state_root, on_exit=on_exit, proposed_root=repos.root / "proposed", nice=settings.agent_nice)
