"""A service's background parts end when it stops, even a part that took the cancel and went on."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from hyperhive import runtime


async def test_a_part_that_took_the_cancel_and_went_on_still_ends_when_the_service_stops() -> None:
    """A consumer is a loop of requests, each a `wait_for` on its reply (nats-py's). When the stop came just as a
    reply did, Python 3.11's `wait_for` returned the reply instead of the cancel, the loop went on, and the stop
    waited for it for ever: a spawner's command loop did, in the kill sweep, and CI ran out of time."""
    loop = asyncio.get_running_loop()
    replies: list[asyncio.Future[int]] = []
    asking = asyncio.Event()
    answered = 0

    async def requests_for_ever() -> None:
        nonlocal answered
        while True:
            reply: asyncio.Future[int] = loop.create_future()
            replies.append(reply)
            asking.set()
            answered += await asyncio.wait_for(reply, 60)

    stack = AsyncExitStack()
    part = runtime.background(stack, requests_for_ever(), "requests")
    await asking.wait()
    replies[-1].set_result(1)  # the reply comes, and in the same moment the service stops
    closing = asyncio.ensure_future(stack.aclose())
    try:
        done, _ = await asyncio.wait({closing}, timeout=10)  # within a second; before, never
    finally:
        closing.cancel()  # what a supervisor's kill would do
    assert closing in done, "the stop waited for ever for a part that took its cancel"
    assert part.cancelled()
    assert (answered, len(replies)) == (1, 2)  # the cancel was taken for the reply, and the loop asked again
