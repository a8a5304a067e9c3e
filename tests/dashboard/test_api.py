"""The dashboard's HTTP API against real NATS, PostgreSQL, broker and approver: what it does for an operator with a
session, and what it refuses to anyone else."""

from __future__ import annotations

import json
import stat
from contextlib import AsyncExitStack
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httpx2 as httpx
import pytest

from hive_dashboard.__main__ import start
from hive_dashboard.password import PasswordError, hash_file, initial_password, initial_password_file, set_password
from hive_dashboard.service import url_of
from hivetest.agents import Agents, Caller
from hivetest.hive import TestHive
from hyperhive import events
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentStateChanged, AskReply, AskRequest

from .conftest import Running, dashboard_settings
from .sse import read

SESSION_ROUTES = [
    ("GET", "/api/me"),
    ("GET", "/api/snapshot"),
    ("GET", "/api/agents"),
    ("POST", "/api/agents/alice/stop"),
    ("GET", "/api/approvals"),
    ("POST", "/api/approvals/1/approve"),
    ("POST", "/api/approvals/1/deny"),
    ("GET", "/api/questions"),
    ("POST", "/api/questions/1/answer"),
    ("POST", "/api/questions/1/cancel"),
    ("GET", "/api/inbox/operator"),
    ("GET", "/api/depths"),
    ("POST", "/api/send"),
    ("GET", "/api/harness/alice"),
    ("POST", "/api/harness/alice/cancel"),
    ("POST", "/api/harness/alice/compact"),
    ("POST", "/api/harness/alice/model"),
    ("POST", "/api/harness/alice/pause"),
    ("GET", "/api/journal/alice"),
    ("GET", "/api/agent-config/alice"),
    ("GET", "/api/audit"),
    ("POST", "/api/password"),
    ("GET", "/api/openapi.json"),
    ("GET", "/events?after=0"),
    ("POST", "/logout"),
]


async def ask(alice: Caller, question: str, **fields: object) -> AskReply:
    reply: AskReply = await alice.call("ask", AskRequest(question=question, **fields), AskReply)  # type: ignore[arg-type]
    return reply


def refused(reply: httpx.Response, status: int, code: str) -> None:
    assert (reply.status_code, reply.json()["code"]) == (status, code), reply.text
    assert reply.json()["message"]


async def test_a_first_start_makes_a_password_whose_hash_and_plain_text_only_the_owner_can_read(
    dashboard: Running, caplog: pytest.LogCaptureFixture
) -> None:
    for path in (hash_file(dashboard.state), initial_password_file(dashboard.state)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((dashboard.state / "dashboard").stat().st_mode) == 0o700
    assert hash_file(dashboard.state).read_text().startswith("$argon2id$")
    assert len(dashboard.password) >= 20
    assert dashboard.password not in caplog.text
    assert (dashboard.state / "dashboard" / "url").read_text().strip() == dashboard.url
    assert url_of(dashboard.state) == dashboard.url  # what `hivectl up` prints
    assert initial_password(dashboard.state) == dashboard.password


async def test_what_hivectl_passwd_sets_is_checked_and_the_first_password_then_goes(dashboard: Running) -> None:
    with pytest.raises(PasswordError, match="at least 12"):
        set_password(dashboard.state, "too short")
    with pytest.raises(PasswordError, match="NUL"):
        set_password(dashboard.state, "twelve chars\x00 and more")
    assert initial_password(dashboard.state) == dashboard.password
    set_password(dashboard.state, "the operator's own password")
    assert initial_password(dashboard.state) is None
    assert stat.S_IMODE(hash_file(dashboard.state).stat().st_mode) == 0o600
    await (await dashboard.logged_in("the operator's own password")).aclose()


async def test_every_route_but_the_login_page_and_static_files_needs_a_session(dashboard: Running) -> None:
    async with dashboard.client() as anonymous:
        for method, path in SESSION_ROUTES:
            refused(await anonymous.request(method, path, json={}), 401, "unauthenticated")
        page = await anonymous.get("/", headers={"Accept": "text/html"})
        assert (page.status_code, page.headers["location"]) == (303, "/login?next=/")
        assert (await anonymous.get("/agents/alice")).status_code == 303
        assert (await anonymous.get("/login")).status_code == 200
        assert (await anonymous.get("/static/live.js")).status_code == 200


async def test_the_session_cookie_is_http_only_and_same_site_strict(dashboard: Running) -> None:
    async with dashboard.client() as client:
        reply = await client.post("/login", data={"password": dashboard.password})
        cookie = reply.headers["set-cookie"].lower()
        assert reply.status_code == 303
        assert "httponly" in cookie
        assert "samesite=strict" in cookie
        assert "secure" not in cookie  # plain http on loopback; HIVE_DASHBOARD_SECURE_COOKIES or https adds it
        assert "content-security-policy" in (await client.get("/")).headers


async def test_the_cookie_is_secure_when_the_dashboard_is_served_over_tls(
    hive: TestHive, database_url: str, broker: object, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        settings = dashboard_settings(hive, database_url, tmp_path / "s", dashboard_secure_cookies=True)
        running = Running(await start(stack, settings), tmp_path / "s")
        async with running.client() as client:
            reply = await client.post("/login", data={"password": running.password})
    assert reply.status_code == 303
    assert "secure" in reply.headers["set-cookie"].lower()


async def test_a_forwarded_address_is_not_believed_from_an_untrusted_client(dashboard: Running) -> None:
    """Else a local user could dodge the login limit by naming a new address each time."""
    async with dashboard.client() as client:
        for i in range(5):
            forged = {"X-Forwarded-For": f"10.0.0.{i}"}
            refused(await client.post("/login", data={"password": "wrong"}, headers=forged), 401, "unauthenticated")
        forged = {"X-Forwarded-For": "10.0.0.99"}
        refused(await client.post("/login", data={"password": dashboard.password}, headers=forged), 429, "rate_limited")


async def test_a_wrong_password_is_refused_then_the_client_is_rate_limited_and_every_attempt_is_audited(
    dashboard: Running, database_url: str
) -> None:
    async with dashboard.client() as client:
        for _ in range(5):
            refused(await client.post("/login", data={"password": "not the password"}), 401, "unauthenticated")
        limited = await client.post("/login", data={"password": dashboard.password})
        refused(limited, 429, "rate_limited")
        assert limited.headers["retry-after"] == "900"
        assert "set-cookie" not in limited.headers
    conn = await asyncpg.connect(database_url)
    try:
        outcomes = [r["outcome"] for r in await conn.fetch("SELECT outcome FROM dashboard_audit ORDER BY id")]
    finally:
        await conn.close()
    assert outcomes == ["refused"] * 5 + ["rate_limited"]


async def test_a_state_changing_request_without_the_right_csrf_token_is_refused(
    dashboard: Running, operator: httpx.AsyncClient
) -> None:
    token = operator.headers.pop("X-CSRF-Token")
    refused(await operator.post("/api/send", json={"to": "alice", "body": "hi"}), 403, "not_allowed")
    wrong = {"X-CSRF-Token": token[:-2] + "xx"}
    refused(await operator.post("/api/send", json={"to": "alice", "body": "hi"}, headers=wrong), 403, "not_allowed")
    refused(await operator.post("/logout", data={"csrf": "forged"}), 403, "not_allowed")
    assert (await operator.get("/api/me")).status_code == 200  # still logged in: the forged logout did nothing
    assert (await operator.post("/logout", data={"csrf": token})).status_code == 303


async def test_a_request_from_another_site_is_refused_even_with_a_session(operator: httpx.AsyncClient) -> None:
    evil = {"Origin": "http://evil.example"}
    refused(await operator.get("/events?after=0", headers=evil), 403, "not_allowed")
    refused(await operator.get("/events?after=0", headers={"Sec-Fetch-Site": "cross-site"}), 403, "not_allowed")
    refused(await operator.post("/api/send", json={"to": "alice", "body": "hi"}, headers=evil), 403, "not_allowed")
    async with httpx.AsyncClient(base_url=str(operator.base_url)) as anonymous:
        refused(await anonymous.post("/login", data={"password": "x"}, headers=evil), 403, "not_allowed")


async def test_a_session_is_over_after_logout(dashboard: Running, operator: httpx.AsyncClient) -> None:
    cookie = operator.cookies.get("hive_session")
    assert (await operator.post("/logout")).status_code == 303
    async with httpx.AsyncClient(base_url=dashboard.url, cookies={"hive_session": cookie or ""}) as replayed:
        refused(await replayed.get("/api/me"), 401, "unauthenticated")


async def test_a_new_password_ends_every_session_whoever_sets_it(dashboard: Running) -> None:
    first, second = await dashboard.logged_in(), await dashboard.logged_in()
    try:
        short = await first.post("/api/password", json={"current": dashboard.password, "new": "short"})
        refused(short, 400, "invalid_request")
        wrong = await first.post("/api/password", json={"current": "wrong", "new": "a long new password"})
        refused(wrong, 403, "not_allowed")
        changed = await first.post("/api/password", json={"current": dashboard.password, "new": "a long new password"})
        assert changed.status_code == 204
        refused(await second.get("/api/me"), 401, "unauthenticated")
        assert not initial_password_file(dashboard.state).exists()
        third = await dashboard.logged_in("a long new password")
        set_password(dashboard.state, "what hivectl passwd set")  # from outside, while the dashboard runs
        refused(await third.get("/api/me"), 401, "unauthenticated")
        await (await dashboard.logged_in("what hivectl passwd set")).aclose()
        await third.aclose()
    finally:
        await first.aclose()
        await second.aclose()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/journal/Alice"),
        ("GET", "/api/agent-config/a.b"),
        ("GET", "/api/harness/system"),
        ("GET", "/api/inbox/toolongname"),
        ("POST", "/api/agents/-x/start"),
        ("POST", "/api/harness/all/cancel"),
        ("GET", "/agents/x%2Ey"),
        ("GET", "/events?after=0&agent=BAD"),
    ],
)
async def test_a_bad_name_in_a_path_is_refused_before_it_is_used(
    operator: httpx.AsyncClient, method: str, path: str
) -> None:
    refused(await operator.request(method, path, json={}), 400, "invalid_name")


async def test_errors_are_json_with_the_wire_codes(operator: httpx.AsyncClient, approver: object) -> None:
    refused(await operator.get("/api/nothing-here"), 404, "not_found")
    refused(await operator.post("/api/approvals/12/approve", json={}), 404, "not_found")
    refused(await operator.post("/api/approvals/abc/approve", json={}), 400, "invalid_request")
    refused(await operator.post("/api/approvals/99999999999999999999/approve", json={}), 400, "invalid_request")
    refused(await operator.post("/api/send", json={"to": "alice"}), 400, "invalid_request")
    refused(await operator.post("/api/agents/alice/explode"), 400, "invalid_request")
    refused(await operator.get("/api/harness/alice"), 503, "unavailable")  # no harness runs for alice
    refused(await operator.get("/events"), 400, "invalid_request")  # where to start is not optional
    refused(await operator.get("/events", headers={"Last-Event-ID": "12x"}), 400, "invalid_request")


async def test_the_openapi_schema_is_generated_from_the_wire_models(operator: httpx.AsyncClient) -> None:
    schema = (await operator.get("/api/openapi.json")).json()
    assert {"Approval", "Question", "HarnessState", "InboxReply", "Snapshot", "ErrorBody"} <= set(
        schema["components"]["schemas"]
    )
    assert "/approvals/{id}/{verb}" in schema["paths"]


async def test_a_tool_permission_approved_through_the_dashboard_is_audited_with_the_operator(
    operator: httpx.AsyncClient, alice: Caller, database_url: str
) -> None:
    asked = await alice.request("tool_permission", agent="alice", tool="Bash", input={"command": "rm -rf build"})
    snapshot = (await operator.get("/api/snapshot")).json()
    assert [a["id"] for a in snapshot["approvals"]] == [asked.id]
    decided = await operator.post(f"/api/approvals/{asked.id}/approve", json={"note": "fine"})
    assert (decided.status_code, decided.json()["status"], decided.json()["resolved_by"]) == (
        200,
        "approved",
        "operator",
    )
    refused(await operator.post(f"/api/approvals/{asked.id}/deny", json={}), 409, "conflict")
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            "SELECT account, session, action, target, outcome FROM dashboard_audit "
            "WHERE action IN ('approve', 'deny') ORDER BY id"
        )
    finally:
        await conn.close()
    assert [(r["account"], r["action"], r["target"], r["outcome"]) for r in rows] == [
        ("operator", "approve", f"approval:{asked.id}", "ok"),
        ("operator", "deny", f"approval:{asked.id}", "conflict"),
    ]
    assert len({r["session"] for r in rows}) == 1
    assert rows[0]["session"]
    audit = (await operator.get("/api/audit")).json()
    assert audit[0]["action"] == "deny"


async def test_a_question_is_answered_with_its_options_or_cancelled(operator: httpx.AsyncClient, alice: Caller) -> None:
    one = await ask(alice, "Deploy?", options=["yes", "no"])
    other = await ask(alice, "Why?")
    pending = (await operator.get("/api/questions", params={"status": "pending"})).json()["questions"]
    assert sorted(q["id"] for q in pending) == [one.id, other.id]
    refused(await operator.post(f"/api/questions/{one.id}/answer", json={"choices": ["maybe"]}), 400, "invalid_request")
    answered = (await operator.post(f"/api/questions/{one.id}/answer", json={"choices": ["yes"]})).json()
    assert (answered["status"], answered["answer"]) == ("answered", "yes")
    cancelled = (await operator.post(f"/api/questions/{other.id}/cancel")).json()
    assert cancelled["status"] == "cancelled"


async def test_the_operator_sends_to_an_agent_and_reads_what_agents_sent_them(
    operator: httpx.AsyncClient, hive: TestHive, agents: Agents
) -> None:
    bob = await agents.agent("bob", recipients=["operator"])
    sent = await operator.post("/api/send", json={"to": "bob", "body": "hello bob"})
    assert (sent.status_code, sent.json()["recipients"]) == (200, ["bob"])
    await bob.send("operator", "hello operator")
    inbox = (await operator.get("/api/inbox/operator")).json()
    assert [(e["message"]["from"], e["message"]["body"]) for e in inbox["entries"]] == [("bob", "hello operator")]
    bobs = (await operator.get("/api/inbox/bob")).json()
    assert [e["message"]["body"] for e in bobs["entries"]] == ["hello bob"]
    refused(await operator.post("/api/send", json={"to": "operator", "body": "me"}), 400, "invalid_request")


async def publish_states(hive: TestHive, states: list[str]) -> None:
    nc = await hive.connect(subjects.SPAWNER)
    for state in states:
        await events.publish(nc, "agent_state", AgentStateChanged(agent="bob", state=state), about="bob")  # type: ignore[arg-type]


async def test_the_event_stream_resumes_after_last_event_id_with_nothing_missed_or_doubled(
    operator: httpx.AsyncClient, hive: TestHive
) -> None:
    as_of = (await operator.get("/api/snapshot")).json()["as_of"]
    async with operator.stream("GET", f"/events?after={as_of}") as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        await publish_states(hive, ["running", "stopped", "running"])
        first = [e for e in await read(stream, 3) if e.event == "hive"]
    await publish_states(hive, ["crashed", "stopped"])  # while nobody listens
    last = first[-1].id
    assert last is not None
    async with operator.stream("GET", "/events?after=0", headers={"Last-Event-ID": last}) as stream:
        await publish_states(hive, ["running"])
        second = [e for e in await read(stream, 3) if e.event == "hive"]
    seqs = [int(e.id or 0) for e in first + second]
    assert seqs == list(range(as_of + 1, as_of + 7))
    assert [e.json()["event"]["data"]["state"] for e in first + second] == [
        "running",
        "stopped",
        "running",
        "crashed",
        "stopped",
        "running",
    ]


async def test_the_event_stream_says_it_is_alive_between_events(
    hive: TestHive, database_url: str, broker: object, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        running = Running(
            await start(stack, dashboard_settings(hive, database_url, tmp_path / "s", dashboard_ping_seconds=0.2)),
            tmp_path / "s",
        )
        client = await running.logged_in()
        async with client.stream("GET", "/events?after=0") as stream:
            seen = await read(stream, 2, kind="ping")
        await client.aclose()
    assert [e.event for e in seen][:1] == ["hello"]
    assert json.loads(seen[0].data) == {"after": 0}


async def test_a_message_to_the_operator_is_pushed_on_the_stream(operator: httpx.AsyncClient, agents: Agents) -> None:
    bob = await agents.agent("bob", recipients=["operator"])
    async with operator.stream("GET", "/events?after=0") as stream:
        await read(stream, 1, kind="hello")
        await bob.send("operator", "are you there?")
        [message] = [e for e in await read(stream, 1, kind="message") if e.event == "message"]
    assert (message.json()["from"], message.json()["body"]) == ("bob", "are you there?")


async def test_another_inbox_growing_is_told_by_its_owner_without_its_body(
    operator: httpx.AsyncClient, agents: Agents
) -> None:
    await agents.agent("bob", recipients=[])
    async with operator.stream("GET", "/events?after=0") as stream:
        await read(stream, 1, kind="hello")
        assert (await operator.post("/api/send", json={"to": "bob", "body": "a secret plan"})).status_code == 200
        seen = await read(stream, 1, kind="queued")
    [queued] = [e for e in seen if e.event == "queued"]
    assert queued.json() == {"owner": "bob"}
    assert "secret" not in "".join(e.data for e in seen)
    assert (await operator.get("/api/depths")).json()["depths"]["bob"] == 1


async def test_a_snapshot_too_old_for_the_stream_is_told_to_resync(operator: httpx.AsyncClient) -> None:
    async with operator.stream("GET", "/events?after=1000") as stream:
        [resync] = await read(stream, 1, kind="resync")
    assert resync.json() == {"as_of": 0}


async def test_with_postgresql_away_nothing_is_done_and_the_answer_says_unavailable(
    operator: httpx.AsyncClient, agents: Agents, database_url: str, postgres_admin_url: str
) -> None:
    """Actions are audited before they are taken: without the audit log, no action."""
    await agents.agent("bob", recipients=[])
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(postgres_admin_url)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
        refused(await operator.post("/api/send", json={"to": "bob", "body": "unaudited"}), 503, "unavailable")
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        await admin.close()
    depths = (await operator.get("/api/depths")).json()["depths"]
    assert depths.get("bob", 0) == 0


async def test_an_action_the_audit_log_cannot_record_is_not_taken(
    operator: httpx.AsyncClient, agents: Agents, db: asyncpg.Connection
) -> None:
    await agents.agent("bob", recipients=[])
    await db.execute("ALTER TABLE dashboard_audit RENAME TO dashboard_audit_away")
    try:
        refused(await operator.post("/api/send", json={"to": "bob", "body": "unaudited"}), 500, "internal")
    finally:
        await db.execute("ALTER TABLE dashboard_audit_away RENAME TO dashboard_audit")
    assert (await operator.get("/api/depths")).json()["depths"].get("bob", 0) == 0
    assert (await operator.post("/api/send", json={"to": "bob", "body": "audited"})).status_code == 200
    assert (await operator.get("/api/depths")).json()["depths"]["bob"] == 1


async def test_a_nul_in_a_body_is_refused_as_bad_input_not_failed_as_a_bug(operator: httpx.AsyncClient) -> None:
    """PostgreSQL cannot store a NUL (the audit log is written before the action): schemathesis found the deny
    note that made it a 500."""
    for path, body in (
        ("/api/approvals/1/deny", {"note": "a\u0000b"}),
        ("/api/questions/1/answer", {"text": "a\u0000b"}),
    ):
        answer = await operator.post(path, json=body)
        assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text)
        assert answer.json()["code"] == "invalid_request", answer.text
