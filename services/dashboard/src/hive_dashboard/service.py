"""The dashboard's wiring: the Starlette app (pages, the event stream, static files, the `/api` FastAPI app) behind
the session and guard middleware, served by uvicorn on a socket bound before anything is announced, so a client
that reads the URL never finds it closed."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.middleware.authentication import AuthenticationMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from hive_dashboard import api, errors, live, terminal
from hive_dashboard.auth import Guard, SessionBackend, on_auth_error
from hive_dashboard.hive import Hive
from hive_dashboard.pages import Pages
from hive_dashboard.password import Passwords, folder
from hive_dashboard.settings import DashboardSettings
from hive_dashboard.store import Store
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.names import check_agent_ref

log = logging.getLogger("hive_dashboard")

STATIC = Path(__file__).parent / "static"
XTERM = Path(__file__).resolve().parents[4] / "node_modules" / "@xterm" / "xterm"
"""xterm.js from the checkout's npm install (`make install`), never copied into the repo."""
XTERM_FIT = XTERM.parent / "addon-fit" / "lib"
UPLOT = XTERM.parents[1] / "uplot" / "dist"
"""uPlot, the same way."""
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'"
)


class SecurityHeaders:
    """Every answer forbids framing, sniffing, inline scripts and third-party loads: agents write much of what the
    pages show, so a slip in escaping must still not run anything."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("content-security-policy", CSP)
                headers.setdefault("x-content-type-options", "nosniff")
                headers.setdefault("referrer-policy", "same-origin")
                headers.setdefault("x-frame-options", "DENY")
                headers.setdefault("cache-control", "no-store")
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Dashboard:
    def __init__(self, settings: DashboardSettings, hive: Hive, store: Store, passwords: Passwords) -> None:
        self.settings = settings
        self.hive = hive
        self.store = store
        self.passwords = passwords
        self.pages = Pages(settings, hive, store, passwords)
        self.feeds = live.Feeds()
        self.app = self._app()
        self.url = ""  # set once it listens

    async def events(self, request: Request) -> Response:
        """`/events`: HIVE_EVENTS from after `Last-Event-ID` (a reconnect) or `?after=` (a snapshot's `as_of`)."""
        try:
            after = live.resume_point(request.headers.get("last-event-id"), request.query_params.get("after"))
        except ValueError as exc:
            return errors.error_response(ErrorCode.INVALID_REQUEST, str(exc))
        agent = request.query_params.get("agent")
        if agent is not None:
            check_agent_ref(agent)
        return EventSourceResponse(
            live.feed(self.hive.nc, self.hive.js, after, agent, self.feeds),
            ping=self.settings.dashboard_ping_seconds,
            ping_message_factory=lambda: ServerSentEvent(event="ping", data=""),
            headers={"X-Accel-Buffering": "no"},
        )

    async def terminal(self, websocket: WebSocket) -> None:
        await terminal.terminal(websocket, self.hive, self.store)

    def _app(self) -> Starlette:
        pages = self.pages
        api_app = api.build(self.hive, self.store, self.passwords, self.settings.state_dir)
        routes = [
            Route("/login", pages.login_form, methods=["GET"]),
            Route("/login", pages.login, methods=["POST"]),
            Route("/logout", pages.logout, methods=["POST"]),
            Route("/", pages.home, methods=["GET"]),
            Route("/agents/{name}", pages.agent, methods=["GET"]),
            Route("/hive", pages.hive_stats, methods=["GET"]),
            Route("/events", self.events, methods=["GET"]),
            WebSocketRoute("/ws/terminal/{name}", self.terminal),
            Mount("/static/vendor/xterm", StaticFiles(directory=XTERM, check_dir=False)),
            Mount("/static/vendor/xterm-fit", StaticFiles(directory=XTERM_FIT, check_dir=False)),
            Mount("/static/vendor/uplot", StaticFiles(directory=UPLOT, check_dir=False)),
            Mount("/static", StaticFiles(directory=STATIC)),
            Mount("/api", app=api_app),
        ]
        middleware = [
            Middleware(SecurityHeaders),
            Middleware(
                AuthenticationMiddleware, backend=SessionBackend(self.store, self.passwords), on_error=on_auth_error
            ),
            Middleware(Guard),
        ]
        return Starlette(routes=routes, middleware=middleware, exception_handlers=dict(errors.HANDLERS))


class _Server(uvicorn.Server):
    """uvicorn inside a hive process: the process's own SIGINT/SIGTERM handlers stop it (`hyperhive.runtime`),
    so uvicorn must not take the signals over."""

    @contextlib.contextmanager
    def capture_signals(self):  # type: ignore[no-untyped-def]
        yield


def url_file(state_dir: Path) -> Path:
    """Where a running dashboard says its URL (`hivectl up` prints it)."""
    return folder(state_dir) / "url"


def url_of(state_dir: Path) -> str | None:
    """Where the dashboard of the hive in `state_dir` listens, once it has said so; None before."""
    try:
        return url_file(state_dir).read_text().strip() or None
    except FileNotFoundError:
        return None


def bind(host: str, port: int) -> socket.socket:
    try:
        return socket.create_server((host, port), backlog=128)
    except OSError as exc:
        raise HiveError(
            ErrorCode.UNAVAILABLE,
            f"The dashboard cannot listen on {host}:{port} ({exc.strerror}); "
            "choose another port with HIVE_DASHBOARD_PORT.",
        ) from None


@contextlib.asynccontextmanager
async def serve_http(dashboard: Dashboard) -> AsyncIterator[str]:
    """Serve the dashboard until the block exits; yields its URL. The socket is listening before this yields, so
    connections made from then on wait in its backlog until uvicorn takes them: no start-up race."""
    settings = dashboard.settings
    sock = bind(settings.dashboard_host, settings.dashboard_port)
    host, port = sock.getsockname()[:2]
    config = uvicorn.Config(
        dashboard.app,
        lifespan="off",
        log_level="warning",
        access_log=False,
        server_header=False,
        proxy_headers=bool(settings.dashboard_trusted_proxies),
        forwarded_allow_ips=settings.dashboard_trusted_proxies or None,
        timeout_graceful_shutdown=3,
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]), name="dashboard-http")
    shown = f"[{host}]" if ":" in host else host
    try:
        yield f"http://{shown}:{port}"
    finally:
        dashboard.feeds.end_all()
        server.should_exit = True
        await task
        sock.close()
