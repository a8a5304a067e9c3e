"""Waiting out what is away (NATS, PostgreSQL, the Anthropic API): a wait that doubles from `first` up to `most`, and
starts again from `first` after a success."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Backoff:
    first: float
    most: float
    _next: float = field(init=False)

    def __post_init__(self) -> None:
        self._next = self.first

    def failed(self) -> float:
        """How long to wait before the next try; the wait after it is twice as long, up to `most`."""
        wait, self._next = self._next, min(self._next * 2, self.most)
        return wait

    def succeeded(self) -> None:
        self._next = self.first
