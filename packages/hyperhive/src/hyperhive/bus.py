"""The NATS bus, transport only: connecting as a principal, calling and serving wire endpoints, pulling from a
durable consumer (`each`) and setting aside what cannot be read. How a service process runs is `hyperhive.runtime`;
the hive's streams and buckets are `hyperhive.streams`.

It is longer than most because every way of using a connection (call, serve, respond, pull) shares its
conventions here: error headers, reconnect hooks, what is unavailable and what is a bug.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import nats
import nats.errors
import nats.js.errors
from nats import micro
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.micro.request import ERROR_CODE_HEADER, ERROR_HEADER, Request, ServiceError
from nats.micro.service import Service
from pydantic import BaseModel, ValidationError

from hyperhive import events, runtime, streams
from hyperhive.backoff import RIDE_OUT_SECONDS, ride_out
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError, first_problem
from hyperhive.wire.models import PoisonMessage
from hyperhive.wire.names import SYSTEM

log = logging.getLogger("hyperhive.bus")

Req = TypeVar("Req", bound=BaseModel)
Rep = TypeVar("Rep", bound=BaseModel)
S = TypeVar("S", bound=HiveSettings)


# ── connecting ───────────────────────────────────────────────────────────────


JS_API = "$JS.API."


class HiveClient(Client):
    """A NATS connection that says when it has reconnected: a pull request lives on the server, and one the server
    lost while the connection was down (a restart) would otherwise be waited out to its expiry — minutes for a
    harness's long poll. Whoever holds a pull registers a hook (`on_reconnect`) and issues it again.

    It also rides out the moments of a reload in which JetStream's API has no responders (`backoff.ride_out`)."""

    def __init__(self) -> None:
        super().__init__()
        self.reconnect_hooks: list[Callable[[], None]] = []

    async def request(  # type: ignore[override]  # the same parameters, passed on by name
        self, subject: str, payload: bytes = b"", timeout: float = 0.5, **options: Any
    ) -> Msg:
        ask = functools.partial(super().request, subject, payload, timeout=timeout, **options)
        if not subject.startswith(JS_API):
            return await ask()
        return await ride_out(ask, min(RIDE_OUT_SECONDS, timeout))

    async def _on_reconnect(self) -> None:
        log.info("connection=%s event=reconnected", self.options.get("name"))
        for hook in self.reconnect_hooks:
            hook()


def on_reconnect(nc: Client, hook: Callable[[], None]) -> None:
    """Call `hook` at every reconnect of `nc` (made by `connect`; others never say)."""
    if isinstance(nc, HiveClient):
        nc.reconnect_hooks.append(hook)


async def connect(settings: HiveSettings, *, name: str, inbox_prefix: str | None = None, **options: Any) -> Client:
    """Connect as the principal whose nkey seed is `settings.nats_creds`.

    `inbox_prefix` must be `_INBOX.<name>` for an agent: its permissions allow no other reply inbox.
    """
    auth: dict[str, Any] = {}
    if settings.nats_creds is not None:
        if not settings.nats_creds.is_file():
            raise HiveError(ErrorCode.UNAVAILABLE, f"NATS credential file {str(settings.nats_creds)!r} does not exist.")
        auth["nkeys_seed"] = str(settings.nats_creds)
    if inbox_prefix is not None:
        auth["inbox_prefix"] = inbox_prefix
    options.setdefault("error_cb", _log_nats_error)
    # Draining at shutdown waits for in-flight replies; nats-py can wait the full timeout on a subscription whose
    # last message a cancelled reader never marked done (nats-io/nats.py#446): keep a stop bounded.
    options.setdefault("drain_timeout", 5)
    # nats-py retries the first connect as often as it reconnects: fail fast at start, then reconnect forever.
    reconnect_forever = options.pop("allow_reconnect", True)
    nc = HiveClient()
    theirs = options.pop("reconnected_cb", None)

    async def on_reconnect() -> None:
        await nc._on_reconnect()
        if theirs is not None:
            await theirs()

    options["reconnected_cb"] = on_reconnect
    try:
        await nc.connect(
            settings.nats_url,
            name=name,
            allow_reconnect=False,
            max_reconnect_attempts=1,  # nats-py: "1" means one retry; "0" means forever
            reconnect_time_wait=0.2,  # type: ignore[arg-type]  # typed int, used as seconds
            **auth,
            **options,
        )
    except (OSError, nats.errors.Error) as exc:
        # A refused connect leaves the transport open; close it so nothing leaks.
        with contextlib.suppress(Exception):
            await nc.close()
        raise HiveError(
            ErrorCode.UNAVAILABLE, f"Cannot connect to NATS at {settings.nats_url} as {name}: {exc!r}"
        ) from exc
    nc.options["allow_reconnect"] = reconnect_forever
    nc.options["max_reconnect_attempts"] = -1
    nc.options["reconnect_time_wait"] = 0.5  # loopback: back within a second of a restart (docs/PERFORMANCE.md)
    return nc


async def _log_nats_error(exc: Exception) -> None:
    log.warning("nats error=%r", exc)


@asynccontextmanager
async def connected(settings: HiveSettings, *, name: str, **options: Any) -> AsyncIterator[Client]:
    """`connect`, and drain on exit so in-flight replies and publishes are not lost."""
    nc = await connect(settings, name=name, **options)
    try:
        yield nc
    finally:
        with contextlib.suppress(nats.errors.ConnectionClosedError):
            await nc.drain()


async def join(stack: AsyncExitStack, settings: HiveSettings, *, name: str) -> tuple[Client, JetStreamContext]:
    """A service's connection for the life of `stack` (drained at the end), with the hive's streams declared."""
    nc = await stack.enter_async_context(connected(settings, name=name))
    js = nc.jetstream()
    await streams.declare(js)
    return nc, js


# ── calling ──────────────────────────────────────────────────────────────────


def encode(model: BaseModel) -> bytes:
    return model.model_dump_json(by_alias=True).encode()


async def call(nc: Client, subject: str, payload: BaseModel, reply: type[Rep], timeout: float = 5.0) -> Rep:
    """Request/reply with wire models; an error reply is raised as the HiveError it carries."""
    try:
        msg = await nc.request(subject, encode(payload), timeout=timeout)
    except nats.errors.NoRespondersError:
        raise HiveError(ErrorCode.UNAVAILABLE, f"No service answers on {subject!r}; is it running?") from None
    except nats.errors.TimeoutError:
        raise HiveError(ErrorCode.UNAVAILABLE, f"No answer on {subject!r} within {timeout:g}s.") from None
    headers = msg.headers or {}
    if ERROR_CODE_HEADER in headers:
        code = headers[ERROR_CODE_HEADER]
        known = code in ErrorCode.__members__.values()
        raise HiveError(ErrorCode(code) if known else ErrorCode.INTERNAL, headers.get(ERROR_HEADER, ""))
    return reply.model_validate_json(msg.data)


async def discover(nc: Client, verb: str = "STATS", service: str | None = None, wait: float = 0.5) -> list[Any]:
    """Scatter-gather over NATS micro discovery (`$SRV.<verb>[.<service>]`): every instance's answer."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(f"$SRV.{verb}" + (f".{service}" if service else ""), b"", reply=inbox)
        answers: list[Any] = []
        deadline = asyncio.get_running_loop().time() + wait
        while (left := deadline - asyncio.get_running_loop().time()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                break
            if msg.data:  # an empty status message means "no responders"
                answers.append(json.loads(msg.data))
        return answers
    finally:
        await sub.unsubscribe()


# ── serving ──────────────────────────────────────────────────────────────────


@dataclass(frozen=True)
class Endpoint(Generic[Req]):
    """One verb of a service: where it listens, what it reads, and what answers it.

    `handler(subject, request)` gets the subject so agent-plane verbs can read the caller from it.
    A `concurrent` handler runs in a task of its own, so a long poll never holds up the next caller.
    """

    name: str
    subject: str
    request: type[Req]
    handler: Callable[[str, Req], Awaitable[BaseModel]]
    concurrent: bool = False


def agent_verb(
    verb: str, request: type[Req], handler: Callable[[str, Req], Awaitable[BaseModel]], *, concurrent: bool = True
) -> Endpoint[Req]:
    """`hive.agent.*.<verb>`: a verb every agent calls on its own plane; the handler reads the caller from the
    subject. Named for the verb's first word (`request.*` is `request`)."""
    return Endpoint(verb.partition(".")[0], subjects.agent_any(verb), request, handler, concurrent)


def tool_verb(
    verb: str, request: type[Req], handler: Callable[[str, Req], Awaitable[BaseModel]], *, concurrent: bool = True
) -> Endpoint[Req]:
    """`hive.tool.*.<verb>`: a verb every admitted tool calls on its own plane; the handler reads the tool from the
    subject. Named `tool-<verb>`."""
    return Endpoint(f"tool-{verb}", subjects.tool_any(verb), request, handler, concurrent)


def operator_verb(
    service: str,
    verb: str,
    request: type[Req],
    handler: Callable[[str, Req], Awaitable[BaseModel]],
    *,
    name: str | None = None,
    concurrent: bool = True,
) -> Endpoint[Req]:
    """`hive.<service>.<verb>`: a verb of the operator plane (the operator's tools and host services)."""
    return Endpoint(name or verb, subjects.operator(service, verb), request, handler, concurrent)


def parse(model: type[Req], data: bytes) -> Req:
    """Parse a request body, naming the first bad field in a sentence."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise HiveError(
            ErrorCode.INVALID_BODY, f"The request is not valid UTF-8 (bad byte at position {exc.start})."
        ) from None
    try:
        return model.model_validate_json(data or b"{}")
    except ValidationError as exc:
        where, what = first_problem(exc, "body")
        raise HiveError(ErrorCode.INVALID_REQUEST, f"Field {where!r}: {what}.") from None


async def _handle(endpoint: Endpoint[Any], subject: str, data: bytes) -> bytes:
    """Run an endpoint's handler; every failure becomes a HiveError (a bug is logged and named as one)."""
    try:
        return encode(await endpoint.handler(subject, parse(endpoint.request, data)))
    except HiveError:
        raise
    except Exception as exc:
        if unavailable(exc):
            log.warning("endpoint=%s subject=%s outcome=unavailable error=%r", endpoint.name, subject, exc)
            raise HiveError(
                ErrorCode.UNAVAILABLE, f"{endpoint.name}: NATS or JetStream is not available ({exc!r}); try again."
            ) from exc
        log.exception("endpoint=%s subject=%s outcome=bug", endpoint.name, subject)
        raise HiveError(ErrorCode.INTERNAL, f"Internal error in {endpoint.name}; see the service log.") from exc


async def _answer(endpoint: Endpoint[Any], request: Request) -> None:
    try:
        reply = await _handle(endpoint, request.subject, request.data)
    except HiveError as exc:
        if not _has_reply(request):
            log.info("endpoint=%s outcome=%s (a notice: nobody to tell)", endpoint.name, exc.code)
            return
        raise ServiceError(exc.code, exc.message) from exc
    if _has_reply(request):
        await request.respond(reply)


def _has_reply(request: Request) -> bool:
    """A publish without a reply subject is a notice: handled, not answered (nats-py's `respond` would raise)."""
    return bool(request._msg.reply)  # nats-py's Request exposes no reply subject


@asynccontextmanager
async def serve(
    nc: Client, *, name: str, version: str, description: str, endpoints: Sequence[Endpoint[Any]]
) -> AsyncIterator[Service]:
    """Run `endpoints` as the NATS micro service `name` until the block exits."""
    service = await micro.add_service(nc, name=name, version=version, description=description)
    tasks: set[asyncio.Task[None]] = set()

    def handler_for(endpoint: Endpoint[Any]) -> Callable[[Request], Awaitable[None]]:
        counters: list[Any] = []  # the micro endpoint, once added

        async def in_task(request: Request) -> None:
            try:
                await _answer(endpoint, request)
            except ServiceError as exc:
                # micro counts errors only for handlers that raise to it; a concurrent one has already returned.
                # nats-py has no public way to count them, so this touches its two private counters.
                for micro_endpoint in counters:
                    micro_endpoint._num_errors += 1
                    micro_endpoint._last_error = f"{exc.code}:{exc.description}"
                await request.respond_error(exc.code, exc.description)

        async def handle(request: Request) -> None:
            if not endpoint.concurrent:
                await _answer(endpoint, request)
                return
            task = asyncio.create_task(in_task(request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        handle.counters = counters  # type: ignore[attr-defined]
        return handle

    for endpoint in endpoints:
        handler = handler_for(endpoint)
        await service.add_endpoint(name=endpoint.name, subject=endpoint.subject, handler=handler)
        handler.counters.append(service._endpoints[-1])  # type: ignore[attr-defined]
    await nc.flush()
    log.info("service=%s event=ready endpoints=%d", name, len(endpoints))
    try:
        yield service
    finally:
        await service.stop()
        await runtime.cancelled(*tasks)


@asynccontextmanager
async def respond(nc: Client, endpoints: Sequence[Endpoint[Any]]) -> AsyncIterator[None]:
    """Serve `endpoints` on plain subscriptions until the block exits: for a principal that may not join `$SRV`
    discovery (an agent's harness serves its harness plane this way). Replies and errors look exactly like those of
    `serve`, so `call` reads both. A request without a reply subject is a notice: handled, not answered."""
    tasks: set[asyncio.Task[None]] = set()

    async def answer(endpoint: Endpoint[Any], msg: Msg) -> None:
        try:
            reply, headers = await _handle(endpoint, msg.subject, msg.data), None
        except HiveError as exc:
            reply, headers = b"", {ERROR_CODE_HEADER: str(exc.code), ERROR_HEADER: exc.message}
        if msg.reply:
            await nc.publish(msg.reply, reply, headers=headers)

    def callback(endpoint: Endpoint[Any]) -> Callable[[Msg], Awaitable[None]]:
        async def handle(msg: Msg) -> None:
            if not endpoint.concurrent:
                await answer(endpoint, msg)
                return
            task = asyncio.create_task(answer(endpoint, msg))
            tasks.add(task)
            task.add_done_callback(tasks.discard)

        return handle

    subs = [await nc.subscribe(endpoint.subject, cb=callback(endpoint)) for endpoint in endpoints]
    await nc.flush()
    try:
        yield
    finally:
        for sub in subs:
            with contextlib.suppress(nats.errors.ConnectionClosedError):
                await sub.unsubscribe()
        await runtime.cancelled(*tasks)


async def _unless(back: asyncio.Event, fetch: Coroutine[Any, Any, list[Msg]]) -> list[Msg]:
    """The fetch's messages; none when the connection came back first (the server may have lost the pull: the
    caller pulls again at once, what was delivered meanwhile is still queued for it)."""
    task = asyncio.ensure_future(fetch)
    waiter = asyncio.ensure_future(back.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            return task.result()
        return []
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            # nats-py's fetch does not always end at once when cancelled: never wait on it unbounded (a service
            # stopping would hang), and take its outcome whenever it comes (or asyncio reports it never retrieved).
            await asyncio.wait({task}, timeout=CANCEL_GRACE_SECONDS)
        task.add_done_callback(_outcome_taken)


def _outcome_taken(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


CANCEL_GRACE_SECONDS = 1.0
MAX_HANDLER_FAILURES = 5  # a message whose handler fails this often is set aside, not retried forever
RETRY_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0


def unavailable(exc: BaseException) -> bool:
    """A failure of what is away (NATS, JetStream's store, PostgreSQL), not of the message: retried for as long as it
    lasts, never a reason to set the message aside."""
    if isinstance(exc, HiveError):
        return exc.code == ErrorCode.UNAVAILABLE
    if isinstance(exc, nats.js.errors.APIError):
        return isinstance(exc, nats.js.errors.ServiceUnavailableError)
    return isinstance(exc, nats.errors.Error | OSError)


async def each(
    nc: Client,
    sub: JetStreamContext.PullSubscription,
    body: type[Req],
    handle: Callable[[Msg, Req], Awaitable[None]],
    *,
    batch: int = 16,
) -> None:
    """Hand every message of a durable pull subscription, read as `body`, to `handle` (which acks it, or not),
    until cancelled. Each fetch is a long poll: the server pushes messages as they are stored.

    The loop outlives what would end it: a message that is not a `body` is set aside at once (`set_aside`), one
    whose handler keeps failing after `MAX_HANDLER_FAILURES` deliveries too (earlier failures are redelivered after a
    short delay); a handler that fails because something is away (`unavailable`) is retried with back-off for as
    long as that lasts; a lost connection or an unavailable JetStream is waited out, and the pull is issued again."""
    back = asyncio.Event()
    on_reconnect(nc, back.set)
    while True:
        back.clear()
        try:
            msgs = await _unless(back, sub.fetch(batch, timeout=30))
        except nats.errors.TimeoutError:
            continue
        except (nats.errors.Error, nats.js.errors.Error, OSError) as exc:
            log.warning("body=%s outcome=fetch_failed error=%r; pulling again", body.__name__, exc)
            await asyncio.sleep(RETRY_SECONDS)
            continue
        for msg in msgs:
            try:
                request = body.model_validate_json(msg.data)
            except ValidationError as exc:
                await set_aside(nc, msg, f"not a {body.__name__}: {exc.errors()[0]['msg']}")
                continue
            try:
                await handle(msg, request)
            except Exception as exc:
                tries = msg.metadata.num_delivered
                if not unavailable(exc) and tries >= MAX_HANDLER_FAILURES:
                    await set_aside(nc, msg, f"its handler failed {MAX_HANDLER_FAILURES} times: {exc!r}")
                    continue
                log.warning(
                    "stream=%s seq=%d outcome=handler_failed tries=%d error=%r",
                    msg.metadata.stream,
                    msg.metadata.sequence.stream,
                    tries,
                    exc,
                )
                with contextlib.suppress(nats.errors.Error):
                    await msg.nak(delay=min(RETRY_SECONDS * tries, RETRY_MAX_SECONDS))


async def set_aside(nc: Client, msg: Msg, error: str, *, about: str | None = "system") -> None:
    """Terminate a stored message its consumer cannot use, so it never comes again and never stops the consumer,
    and say so: a log line and a `poison_message` event naming the stream and sequence.

    `about` is where the event goes: `system` for host services (`hive.events.poison_message.system`), an agent's
    name, whose harness may publish only on its own agent plane, or None for a principal that publishes no events
    (the operator's tools): the log line only."""
    meta = msg.metadata
    error = error.splitlines()[0][:500] if error else "unreadable"
    log.error(
        "stream=%s seq=%d subject=%s consumer=%s outcome=set_aside error=%s",
        meta.stream,
        meta.sequence.stream,
        msg.subject,
        meta.consumer,
        error,
    )
    with contextlib.suppress(nats.errors.Error):  # confirmed: once set aside, it is gone before we go on
        await nc.request(msg.reply, b"+TERM", timeout=2)
    if about is None:
        return
    record = PoisonMessage(
        stream=meta.stream, seq=meta.sequence.stream, subject=msg.subject, consumer=meta.consumer or "", error=error
    )
    try:
        await events.publish(nc, "poison_message", record, about=about, by_agent=about != SYSTEM)
    except HiveError as exc:
        log.warning("stream=%s seq=%d outcome=poison_event_unsent error=%s", meta.stream, meta.sequence.stream, exc)
