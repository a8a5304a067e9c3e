"""schemathesis over the dashboard's own OpenAPI schema, against the running dashboard and the real broker, approver
and spawner: whatever the schema allows, the answer is never a bug (`internal`), and every refusal is
`{code, message}` with a wire code."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2 as httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from hivetest.agents import make_agent
from hivetest.hive import TestHive
from hyperhive.wire.errors import ErrorCode
from hyperhive.wire.models import AskReply, AskRequest

from .conftest import RealHive

EXAMPLES = 20
CODES = {code.value for code in ErrorCode}


def fuzz(raw: dict[str, Any], base_url: str, headers: dict[str, str]) -> tuple[list[str], dict[str, int]]:
    """Every operation, up to `EXAMPLES` generated requests each; what went wrong (one line per finding), and how
    many requests each operation got."""
    found: list[str] = []
    calls: dict[str, int] = {}
    schema = schemathesis.openapi.from_dict(raw)
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            reply = case.call(base_url=base_url, headers=headers)
            where = f"{case.method} {case.formatted_path}"
            calls[case.operation.label] = calls.get(case.operation.label, 0) + 1
            if reply.status_code >= 400:
                body = reply.json()
                if body.get("code") not in CODES or not body.get("message"):
                    found.append(f"{where}: {reply.status_code} without a wire error: {reply.text[:200]}")
                    return
                if body["code"] == ErrorCode.INTERNAL:
                    found.append(f"{where}: {reply.status_code} internal: {body['message']}")
                elif reply.status_code >= 500 and not (
                    body["code"] == ErrorCode.UNAVAILABLE and case.formatted_path.startswith("/harness/")
                ):
                    found.append(f"{where}: {reply.status_code} {body['code']}: {body['message']}")

        check()
    return found, calls


async def test_no_request_the_schema_allows_is_answered_with_a_bug_or_an_unexplained_error(
    real_hive: RealHive, hive: TestHive
) -> None:
    """A harness that does not run is `unavailable` (503): the only 5xx allowed, and only on `/harness/…`. There is
    something to hit: a pending spawn (approval 1) and a pending question (question 1)."""
    manager = await make_agent(hive, real_hive.approver, "manager")
    alice = await make_agent(hive, real_hive.approver, "alice")
    await manager.request("spawn", agent="scout", description="fuzzed")
    await alice.call("ask", AskRequest(question="Fuzzed?", options=["a", "b"], multi=True), AskReply)
    operator: httpx.AsyncClient = await real_hive.dashboard.logged_in()
    try:
        raw = (await operator.get("/api/openapi.json")).json()
        headers = {
            "Cookie": f"hive_session={operator.cookies['hive_session']}",
            "X-CSRF-Token": operator.headers["X-CSRF-Token"],
        }
        found, calls = await asyncio.to_thread(fuzz, raw, real_hive.dashboard.url + "/api", headers)
        assert (await operator.get("/api/me")).status_code == 200  # the session outlived the fuzzing
    finally:
        await operator.aclose()
    assert found == []
    assert len(calls) == sum(len(methods) for methods in raw["paths"].values())  # every operation was tried
    assert sum(calls.values()) >= 5 * len(calls)
