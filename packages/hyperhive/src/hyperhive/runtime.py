"""A service process: read its settings, log one event per line, enter everything it needs into one AsyncExitStack,
and run until SIGINT/SIGTERM (or a failed part) unwinds it in reverse order. A service's `__main__` is `main`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack
from typing import Any, TypeVar

from hyperhive.backoff import Backoff
from hyperhive.settings import HiveSettings, SettingsError, load
from hyperhive.wire.errors import ErrorCode, HiveError

log = logging.getLogger("hyperhive.runtime")

S = TypeVar("S", bound=HiveSettings)
START_PATIENCE_SECONDS = 120.0
LoopFactory = Callable[[], asyncio.AbstractEventLoop]


def service_loop() -> asyncio.AbstractEventLoop:
    """A host service's event loop: uvloop's (libuv), less CPU per NATS message (decision 0007). Imported here, not
    at the top, so that a process on asyncio's own loop (an agent's harness) never loads it."""
    import uvloop  # noqa: PLC0415 - see above

    return uvloop.new_event_loop()


def main(
    settings_type: type[S],
    start: Callable[[AsyncExitStack, S, asyncio.Event], Awaitable[object]],
    loop: LoopFactory = service_loop,
) -> None:
    """A service's `__main__`: read its settings (failing with a sentence naming what is missing), log, and run
    `start` on `loop` until SIGINT/SIGTERM."""
    try:
        settings = load(settings_type)
    except SettingsError as exc:
        raise SystemExit(f"{settings_type.__name__}: {exc}") from None
    setup_logging(settings.log_level)

    async def started(stack: AsyncExitStack, stop: asyncio.Event) -> None:
        """`start`, again after a back-off while what it needs is unavailable (NATS restarting, a reload closing
        connections, JetStream electing): a hive that is busy for a moment — a hundred agents starting at once —
        is waited out for up to START_PATIENCE_SECONDS, not turned into a crash."""
        backoff, deadline = Backoff(0.25, 8.0), asyncio.get_running_loop().time() + START_PATIENCE_SECONDS
        while True:
            attempt = AsyncExitStack()
            try:
                await start(attempt, settings, stop)
            except HiveError as exc:
                await attempt.aclose()
                if exc.code != ErrorCode.UNAVAILABLE or asyncio.get_running_loop().time() > deadline:
                    raise
                log.warning("event=start_retry error=%r", exc.message)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), backoff.failed())  # a back-off that a stop cuts short
                if stop.is_set():
                    raise
                continue
            stack.push_async_callback(attempt.aclose)
            return

    try:
        run(started, loop)
    except HiveError as exc:  # a dependency is missing at start: one sentence, not a traceback
        raise SystemExit(f"{settings_type.__name__}: cannot start: {exc}") from None


def run(main: Callable[[AsyncExitStack, asyncio.Event], Awaitable[None]], loop: LoopFactory = service_loop) -> None:
    """Run a service process on `loop`: `main` enters what it needs into the stack; SIGINT/SIGTERM, or `stop` set
    by a failed part, unwinds it."""

    async def until_stopped() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with AsyncExitStack() as stack:
            await main(stack, stop)
            await stop.wait()
            log.info("event=stopping")

    with asyncio.Runner(loop_factory=loop) as runner:
        runner.run(until_stopped())


def background(
    stack: AsyncExitStack, work: Coroutine[Any, Any, None], name: str, stop: asyncio.Event | None = None
) -> asyncio.Task[None]:
    """Run `work` for the life of the stack. If it fails, `stop` is set: a service missing a part of itself
    should be restarted whole by its supervisor, not limp on. (Without `stop`, as in tests, it is logged.)"""
    task = asyncio.create_task(work, name=name)

    def finished(t: asyncio.Task[None]) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.error("task=%s outcome=failed error=%r; stopping", name, t.exception())
            if stop is not None:
                stop.set()

    async def cancel() -> None:
        task.remove_done_callback(finished)
        await cancelled(task)

    task.add_done_callback(finished)
    stack.push_async_callback(cancel)
    return task


RECANCEL_SECONDS = 1.0


async def cancelled(*tasks: asyncio.Future[Any]) -> None:
    """Cancel `tasks` and return once every one has ended.

    A task can take a cancel and go on: Python 3.11's `asyncio.wait_for` returns its inner result when the cancel comes
    just as that completes (python/cpython#86296), and every nats-py request is one. So what has not ended within
    `RECANCEL_SECONDS` is cancelled again. (A spawner being stopped waited for its command loop for ever when the
    cancel met the reply to its ack: the loop went on to the next fetch.)"""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
    for task in tasks:
        if not task.cancelled():
            task.exception()  # taken: a failure was logged where it happened


def setup_logging(level: str) -> None:
    """One event per line to stderr, `key=value` style."""
    logging.basicConfig(level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
