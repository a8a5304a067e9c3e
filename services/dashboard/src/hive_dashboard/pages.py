"""The pages: the login form (the one page without a session), logout, the home page and an agent's page. A page is
server-rendered (Jinja2) with its snapshot inside it, so it shows at once and says which event it is as of; its
small script renders the rows from that snapshot and keeps them live from `/events`."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates

from hive_dashboard.auth import COOKIE, client_of, session_of
from hive_dashboard.errors import STATUS, error_response
from hive_dashboard.hive import Hive
from hive_dashboard.password import ACCOUNT, Passwords
from hive_dashboard.settings import DashboardSettings
from hive_dashboard.store import Store
from hyperhive.wire.errors import ErrorCode
from hyperhive.wire.names import check_agent_ref

log = logging.getLogger("hive_dashboard")

TEMPLATES = Path(__file__).parent / "templates"
MAX_PASSWORD_FIELD = 1024


def embedded(data: Any) -> str:
    """JSON to put inside a `<script type="application/json">`: no `<`, `>` or `&` that could end it early."""
    text = json.dumps(data)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def safe_next(value: object) -> str:
    """Where to go after the login: a path of ours, never another site (`//evil`, `https://…`)."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith(("//", "/\\")) and len(value) < 512:
        return value
    return "/"


def wants_html(request: Request) -> bool:
    return "text/html" in request.headers.get("accept", "")


class Pages:
    def __init__(self, settings: DashboardSettings, hive: Hive, store: Store, passwords: Passwords) -> None:
        self.settings = settings
        self.hive = hive
        self.store = store
        self.passwords = passwords
        self.templates = Jinja2Templates(directory=str(TEMPLATES))

    def _page(self, request: Request, template: str, status: int = 200, **context: Any) -> Response:
        session = session_of(request.scope)
        context.setdefault("csrf", session.csrf if session else "")
        context.setdefault("account", session.account if session else "")
        context.setdefault("ping_seconds", self.settings.dashboard_ping_seconds)
        return self.templates.TemplateResponse(request, template, context, status_code=status)

    # ── login ──

    async def login_form(self, request: Request) -> Response:
        if session_of(request.scope) is not None:
            return RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
        return self._page(request, "login.html", next=safe_next(request.query_params.get("next")), error="")

    def _refused(self, request: Request, code: ErrorCode, message: str, nxt: str) -> Response:
        headers = {"Retry-After": "900"} if code == ErrorCode.RATE_LIMITED else None
        if wants_html(request):
            response = self._page(request, "login.html", STATUS[code], next=nxt, error=message)
            if headers:
                response.headers.update(headers)
            return response
        return error_response(code, message, headers)

    async def login(self, request: Request) -> Response:
        """Check the password (argon2, off the event loop), at most `dashboard_login_failures` wrong ones per
        client in 15 minutes; every attempt is recorded and audited."""
        client = client_of(request)
        form = await request.form(max_fields=10, max_part_size=MAX_PASSWORD_FIELD * 4)
        password = form.get("password")
        nxt = safe_next(form.get("next"))
        if await self.store.recent_failures(client) >= self.settings.dashboard_login_failures:
            await self.store.audit(ACCOUNT, "login", ACCOUNT, "rate_limited", client=client)
            log.warning("action=login client=%s outcome=rate_limited", client)
            return self._refused(request, ErrorCode.RATE_LIMITED, "Too many failed logins; wait 15 minutes.", nxt)
        ok = isinstance(password, str) and 0 < len(password) <= MAX_PASSWORD_FIELD
        ok = ok and await asyncio.to_thread(self.passwords.verify, str(password))
        await self.store.record_login(client, ACCOUNT, ok)
        if not ok:
            await self.store.audit(ACCOUNT, "login", ACCOUNT, "refused", client=client)
            log.warning("action=login client=%s outcome=refused", client)
            return self._refused(request, ErrorCode.UNAUTHENTICATED, "Wrong password.", nxt)
        lifetime = timedelta(hours=self.settings.dashboard_session_hours)
        await self.store.forget_old()
        token = await self.store.open_session(ACCOUNT, self.passwords.current_id(), lifetime, client)
        await self.store.audit(ACCOUNT, "login", ACCOUNT, "ok", client=client)
        log.info("action=login account=%s client=%s outcome=ok", ACCOUNT, client)
        response = RedirectResponse(nxt, status_code=303)
        response.set_cookie(
            COOKIE,
            token,
            max_age=int(lifetime.total_seconds()),
            path="/",
            httponly=True,
            samesite="strict",
            secure=self.settings.dashboard_secure_cookies or request.url.scheme == "https",
        )
        return response

    async def logout(self, request: Request) -> Response:
        session = session_of(request.scope)
        assert session is not None  # the guard saw to it
        await self.store.revoke(session.token_hash)
        await self.store.audit(
            session.account, "logout", session.account, "ok", session=session.short, client=client_of(request)
        )
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(COOKIE, path="/")
        return response

    # ── pages ──

    async def _live_page(self, request: Request, template: str, **context: Any) -> Response:
        """A page with the snapshot its script starts from (and its feed resumes after)."""
        snapshot = await self.hive.snapshot()
        data = embedded(snapshot.model_dump(mode="json", by_alias=True))
        return self._page(request, template, snapshot=data, **context)

    async def home(self, request: Request) -> Response:
        return await self._live_page(request, "home.html")

    async def hive_stats(self, request: Request) -> Response:
        """The hive page: its hive-wide stats and the top agents by cost (`stats.js`), live like the others."""
        return await self._live_page(request, "hive.html")

    async def agent(self, request: Request) -> Response:
        return await self._live_page(request, "agent.html", name=check_agent_ref(request.path_params["name"]))
