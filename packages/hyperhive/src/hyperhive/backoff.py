"""Waiting out what is away (NATS, PostgreSQL, the Anthropic API): a wait that doubles from `first` up to `most`, and
starts again from `first` after a success; and riding out the moment of a reload in which nobody answers."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import nats.errors

T = TypeVar("T")
RIDE_OUT_SECONDS = 2.0


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


async def ride_out(attempt: Callable[[], Awaitable[T]], within: float = RIDE_OUT_SECONDS) -> T:
    """`attempt()`, and again while it finds nobody to answer (`NoRespondersError`), for up to `within` seconds.

    Every reload of auth.conf that adds or removes an agent makes nats-server re-wire the hive's account and every
    service import into it. For a moment JetStream's API, a stream's capture of an agent's subject, or an agent's
    inbox consumer then has no responders (measured: about one JetStream request in ten while 40 agents were
    admitted, one reload each). Nobody received such a request, so asking again is safe whatever it asked."""
    loop = asyncio.get_running_loop()
    deadline, backoff = loop.time() + within, Backoff(0.01, 0.2)
    while True:
        try:
            return await attempt()
        except nats.errors.NoRespondersError:
            pause = backoff.failed()
            if loop.time() + pause > deadline:
                raise
        await asyncio.sleep(pause)  # a back-off while the server re-wires the account, not a synchronisation
