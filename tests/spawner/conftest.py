"""Spawner test helpers."""

import threading

import pytest


class Exits:
    """Records the exits a backend reports (from its reader threads)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None]] = []
        self.happened = threading.Event()

    def __call__(self, name: str, code: int | None) -> None:
        self.seen.append((name, code))
        self.happened.set()


@pytest.fixture
def exits() -> Exits:
    return Exits()
