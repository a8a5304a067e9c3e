"""The host's turn slots: how many agents run the claude CLI at once. A CLI holds ~200 MiB while it runs, so a
hundred agents woken together would need ~20 GiB; with slots they take turns, the first to ask first served, and
each agent holds at most one. A slot an agent holds is given back when its harness asks, and when the agent stops,
crashes or starts again (a harness that died mid-turn never hands its slot on). Giving back also withdraws an ask
still waiting: a harness whose turn the operator cancelled while it waited says so, and the slot is not granted to
a turn that is no longer there."""

from __future__ import annotations

import asyncio
import contextlib


class Slots:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.holders: set[str] = set()
        self._withdrawn: set[str] = set()
        self._changed = asyncio.Condition()

    async def take(self, agent: str, wait: float) -> bool:
        """Whether `agent` holds a slot, waiting up to `wait` seconds for one to be free."""
        async with self._changed:
            if agent in self.holders:
                return True
            self._withdrawn.discard(agent)  # a give-back from before this ask withdraws nothing of it

            def decided() -> bool:  # a slot is free, or the ask was withdrawn
                return agent in self._withdrawn or len(self.holders) < self.limit

            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait_for(decided), wait)
            if agent in self._withdrawn or len(self.holders) >= self.limit:
                self._withdrawn.discard(agent)
                return False
            self.holders.add(agent)
            return True

    async def give_back(self, agent: str) -> None:
        """Free `agent`'s slot, or withdraw its ask that is waiting for one."""
        async with self._changed:
            if agent not in self.holders:
                self._withdrawn.add(agent)
            self.holders.discard(agent)
            self._changed.notify_all()  # they re-acquire in the order they waited: first come, first served
