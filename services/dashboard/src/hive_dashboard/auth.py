"""Who is asking, and whether they may: the session cookie read into an operator (Starlette's
`AuthenticationBackend`), and one guard in front of every route — a session for everything but the login page and
the static assets, the same origin for every state-changing request and for the event stream, and the session's
CSRF token on every state-changing request (an `X-CSRF-Token` header from fetch, a `csrf` field from a form) and on
a WebSocket's opening (its `csrf` query parameter)."""

from __future__ import annotations

import hmac
from urllib.parse import parse_qs, quote

from starlette.authentication import AuthCredentials, AuthenticationBackend, AuthenticationError, BaseUser
from starlette.datastructures import Headers, QueryParams
from starlette.requests import HTTPConnection
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketClose

from hive_dashboard.errors import error_response
from hive_dashboard.password import Passwords
from hive_dashboard.store import Session, Store
from hyperhive.wire.errors import ErrorCode, HiveError

COOKIE = "hive_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = frozenset({"/login"})
LIVE_PATHS = ("/events", "/ws")
MAX_FORM_BYTES = 256 * 1024


class Operator(BaseUser):
    """An operator with a live session."""

    def __init__(self, session: Session) -> None:
        self.session = session

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.session.account


class Unavailable(AuthenticationError):
    """The session could not be looked up (PostgreSQL is away): an outage, not a refusal."""


class SessionBackend(AuthenticationBackend):
    def __init__(self, store: Store, passwords: Passwords) -> None:
        self.store = store
        self.passwords = passwords

    async def authenticate(self, conn: HTTPConnection) -> tuple[AuthCredentials, BaseUser] | None:
        if public(conn.url.path) or not (token := conn.cookies.get(COOKIE)):
            return None
        try:
            session = await self.store.session(token)
        except HiveError as exc:
            raise Unavailable(exc.message) from exc
        if session is None or session.password_id != self.passwords.current_id():
            return None  # a session opened under an older password is over
        return AuthCredentials(["operator"]), Operator(session)


def on_auth_error(conn: HTTPConnection, exc: AuthenticationError) -> Response:
    return error_response(ErrorCode.UNAVAILABLE, str(exc))


def public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


def wants_json(path: str) -> bool:
    return path.startswith(("/api/", *LIVE_PATHS)) or path == "/api"


def same_origin(scope: Scope) -> bool:
    """The request comes from a page of ours (or from no page at all: a command-line client sends no Origin).
    A browser says where a request comes from in `Origin` and `Sec-Fetch-Site`; both must agree with us."""
    headers = Headers(scope=scope)
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return origin == f"{scheme}://{headers.get('host', '')}"


def client_of(conn: HTTPConnection) -> str:
    """The client's address: the connection's peer, or what a trusted proxy said (`HIVE_DASHBOARD_TRUSTED_PROXIES`)."""
    return conn.client.host if conn.client else ""


def session_of(scope: Scope) -> Session | None:
    user = scope.get("user")
    return user.session if isinstance(user, Operator) else None


class Guard:
    """In front of every route, after the session is read (see the module's docstring for the rules)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope.get("method", "GET")
        unsafe = method not in SAFE_METHODS
        websocket = scope["type"] == "websocket"
        if (unsafe or path.startswith(LIVE_PATHS) or websocket) and not same_origin(scope):
            await refuse(scope, receive, send, ErrorCode.NOT_ALLOWED, "Requests from another site are refused.")
            return
        if public(path):
            await self.app(scope, receive, send)
            return
        session = session_of(scope)
        if session is None and websocket:
            await refuse(scope, receive, send, ErrorCode.UNAUTHENTICATED, "Log in first: there is no session.")
            return
        if session is None:
            if wants_json(path) or unsafe:
                response: Response = error_response(ErrorCode.UNAUTHENTICATED, "Log in first: there is no session.")
            else:
                response = RedirectResponse(f"/login?next={quote(path)}", status_code=303)
            await response(scope, receive, send)
            return
        if unsafe or websocket:
            # A WebSocket cannot carry a header from a page: its opening carries the token in its query.
            given, receive = (
                (QueryParams(scope.get("query_string", b"").decode("latin-1")).get(CSRF_FIELD), receive)
                if websocket
                else await csrf_token(scope, receive)
            )
            if given is None or not hmac.compare_digest(given.encode(), session.csrf.encode()):
                await refuse(
                    scope, receive, send, ErrorCode.NOT_ALLOWED, "The CSRF token is missing or wrong; reload the page."
                )
                return
        await self.app(scope, receive, send)


async def refuse(scope: Scope, receive: Receive, send: Send, code: ErrorCode, message: str) -> None:
    """An HTTP refusal as `{code, message}`; a WebSocket is closed with 1008 (policy violation) before it opens."""
    if scope["type"] == "websocket":
        await WebSocketClose(code=1008, reason=message[:120])(scope, receive, send)
        return
    await error_response(code, message)(scope, receive, send)


async def csrf_token(scope: Scope, receive: Receive) -> tuple[str | None, Receive]:
    """The request's CSRF token, from its header or, for a form, its `csrf` field — and a `receive` that hands the
    app the body again, since reading the form consumed it."""
    headers = Headers(scope=scope)
    if (given := headers.get(CSRF_HEADER)) is not None:
        return given, receive
    if not headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return None, receive
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
        if len(body) > MAX_FORM_BYTES:
            return None, receive
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    fields = parse_qs(body.decode("latin-1"), keep_blank_values=True)
    values = fields.get(CSRF_FIELD, [])
    return (values[0] if values else None), replay
