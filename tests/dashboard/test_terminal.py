"""The agent's terminal through the dashboard: the harness's real PTY relay (`hive_harness.terminal`) bridged to a
WebSocket and shown by xterm.js; refused without a session and from another site."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
import websockets
from playwright.async_api import Browser, Page, expect
from websockets.asyncio.client import connect

from hive_approver.__main__ import start as start_approver
from hive_dashboard.__main__ import start
from hive_harness.terminal import MAX_SESSIONS, Terminals
from hive_spawner.__main__ import start as start_spawner
from hivetest.agents import make_agent, operator_call
from hivetest.hive import TestHive
from hivetest.messages_api import serve_messages_api
from hivetest.services import approver_settings, real_harness_spawner
from hyperhive.wire import subjects
from hyperhive.wire.models import Approval, DecisionRequest, Event, PtySession

from .conftest import Running, dashboard_settings, log_in


@pytest.fixture
async def alice_terminals(hive: TestHive, tmp_path: Path) -> AsyncIterator[Terminals]:
    """alice's harness's terminals, as her harness serves them (its login shell, in a folder of hers)."""
    hive.add_agent("alice")
    home = tmp_path / "alice"
    home.mkdir()
    async with AsyncExitStack() as stack:
        terminals = Terminals(await hive.connect("alice"), "alice", cwd=home)
        await terminals.serve(stack)
        yield terminals


def ws_url(dashboard: Running, name: str = "alice", csrf: str = "") -> str:
    return dashboard.url.replace("http://", "ws://") + f"/ws/terminal/{name}?csrf={csrf}"


async def operator_socket(dashboard: Running) -> tuple[dict[str, str], str]:
    """What a logged-in page opens a terminal with: its session cookie, and its CSRF token."""
    client = await dashboard.logged_in()
    cookie = {"Cookie": f"hive_session={client.cookies['hive_session']}"}
    csrf = client.headers["X-CSRF-Token"]
    await client.aclose()
    return cookie, csrf


async def test_a_shell_in_the_agents_container_runs_in_the_browser_and_closes_with_its_section(
    browser: Browser, dashboard: Running, alice_terminals: Terminals, hive: TestHive
) -> None:
    watcher = await hive.connect(subjects.DASHBOARD)
    opened = await watcher.subscribe(subjects.agent_event("alice", "pty_opened"))
    closed = await watcher.subscribe(subjects.agent_event("alice", "pty_closed"))
    page = await log_in(browser, dashboard)
    await page.goto(dashboard.url + "/agents/alice")
    await page.click("#terminal-section summary")
    await expect(page.locator("#terminal")).to_have_attribute("data-state", "open")
    session = PtySession.model_validate(Event.model_validate_json((await opened.next_msg(timeout=10)).data).data)
    assert session.opened_by == "operator"  # the operator account, in the harness's own audit record
    await expect(page.locator("#terminal")).to_have_attribute("data-control", "no")  # it opens watching
    await page.locator("#terminal .xterm-helper-textarea").focus()
    await page.keyboard.type("echo watched-$((2*3))")  # not sent: only watching
    await page.keyboard.press("Enter")
    await page.click("#terminal-control")
    await expect(page.locator("#terminal")).to_have_attribute("data-control", "yes")
    await page.locator("#terminal .xterm-helper-textarea").focus()
    await page.keyboard.type("echo hi-$((6*7))")
    await page.keyboard.press("Enter")
    await expect(page.locator("#terminal .xterm-rows")).to_contain_text("hi-42")
    assert "watched" not in await page.locator("#terminal .xterm-rows").inner_text()
    await page.click("#terminal-section summary")  # closing the section closes the shell
    ended = PtySession.model_validate(Event.model_validate_json((await closed.next_msg(timeout=10)).data).data)
    assert ended.session == session.session
    client = await dashboard.logged_in()
    audit = [(e["action"], e["target"], e["outcome"]) for e in (await client.get("/api/audit")).json()]
    await client.aclose()
    assert [a for a in audit if a[0].startswith("terminal")][::-1] == [
        ("terminal", "alice", "ok"),
        ("terminal-control", "alice", "ok"),
        ("terminal-close", "alice", "ok"),
    ]


async def test_a_terminal_is_refused_without_a_session_from_another_site_or_for_a_bad_name(
    dashboard: Running, alice_terminals: Terminals, hive: TestHive
) -> None:
    closed = await (await hive.connect(subjects.DASHBOARD)).subscribe(subjects.agent_event("alice", "pty_closed"))
    with pytest.raises(websockets.exceptions.InvalidStatus) as anonymous:
        async with connect(ws_url(dashboard)):
            pass
    assert anonymous.value.response.status_code == 403
    cookie, csrf = await operator_socket(dashboard)
    own = dashboard.url
    for url, origin in [
        (ws_url(dashboard, csrf=csrf), "http://evil.example"),  # another site
        (ws_url(dashboard, "Alice", csrf=csrf), own),  # a bad name
        (ws_url(dashboard), own),  # no CSRF token
        (ws_url(dashboard, csrf="not-" + csrf), own),  # a wrong one
    ]:
        with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
            async with connect(url, additional_headers=cookie, origin=origin):  # type: ignore[arg-type]
                pass
        assert refused.value.response.status_code == 403, url
    async with connect(ws_url(dashboard, csrf=csrf), additional_headers=cookie, origin=own) as ws:  # type: ignore[arg-type]
        await ws.send('{"control": true}')
        while isinstance(said := await ws.recv(), bytes):  # the shell's prompt (output) may come first
            pass
        assert json.loads(said) == {"control": True}  # a text frame: the harness's answer
        await ws.send(b"echo from-a-script\n")
        seen = b""
        while seen.count(b"from-a-script") < 2:  # the line as typed, then what it printed
            seen += await ws.recv()  # type: ignore[operator]
        # A 100 KB paste, one frame as xterm.js sends it: through the dashboard and the PTY, every byte, in order.
        paste = b"".join(f"{i:05d} {'y' * 93}\n".encode() for i in range(1024))
        for data in (b"cat > pasted.txt\n", paste, b"\x04", b"echo pasted-$((2+2))\n"):
            await ws.send(data)
        seen = b""
        while b"pasted-4" not in seen.replace(b"pasted-$((2+2))", b""):
            frame = await ws.recv()
            seen = (seen + frame)[-200:] if isinstance(frame, bytes) else seen
    assert (alice_terminals.cwd / "pasted.txt").read_bytes() == paste
    await closed.next_msg(timeout=10)  # the socket closed, and so did the shell
    assert alice_terminals.sessions == {}


async def test_a_fifth_terminal_is_refused_and_the_refusal_audited(
    dashboard: Running, alice_terminals: Terminals, hive: TestHive
) -> None:
    cookie, csrf = await operator_socket(dashboard)
    async with AsyncExitStack() as stack:
        for _ in range(MAX_SESSIONS):
            ws = await stack.enter_async_context(
                connect(ws_url(dashboard, csrf=csrf), additional_headers=cookie, origin=dashboard.url)  # type: ignore[arg-type]
            )
            await ws.send('{"cols": 90, "rows": 20}')
        assert len(alice_terminals.sessions) == MAX_SESSIONS
        with pytest.raises(websockets.exceptions.InvalidStatus) as fifth:
            async with connect(ws_url(dashboard, csrf=csrf), additional_headers=cookie, origin=dashboard.url):  # type: ignore[arg-type]
                pass
        assert fifth.value.response.status_code == 403
    client = await dashboard.logged_in()
    audit = [(e["action"], e["outcome"]) for e in (await client.get("/api/audit")).json()]
    await client.aclose()
    assert [a for a in audit if a[0] == "terminal"][::-1] == [("terminal", "ok")] * MAX_SESSIONS + [
        ("terminal", "conflict")
    ]


async def test_echo_typed_in_the_browser_is_answered_from_inside_the_agents_sandbox(
    browser: Browser, hive: TestHive, database_url: str, broker: object, spawner_state: Path, tmp_path: Path
) -> None:
    """The whole path: Chromium's xterm.js, the dashboard's WebSocket, the harness's PTY inside bob's bubblewrap
    sandbox (its hostname is bob), spawned through an approval by the real spawner."""
    async with AsyncExitStack() as stack:
        api = stack.enter_context(serve_messages_api())
        await start_spawner(stack, real_harness_spawner(hive, spawner_state, api))
        approver = await start_approver(stack, approver_settings(hive, database_url))
        state = tmp_path / "hive-state"
        dashboard = Running(await start(stack, dashboard_settings(hive, database_url, state)), state)
        manager = await make_agent(hive, approver, "manager")
        turns = await (await hive.connect(subjects.DASHBOARD)).subscribe(subjects.agent("bob", subjects.STATS))
        pending = await manager.request("spawn", agent="bob")
        await operator_call(await hive.connect("operator"), "approve", DecisionRequest(id=pending.id), Approval)
        await turns.next_msg(timeout=90)  # bob's harness is up, and its wake-up turn has ended

        page = await log_in(browser, dashboard)
        await page.goto(dashboard.url + "/agents/bob")
        await page.click("#terminal-section summary")
        await expect(page.locator("#terminal")).to_have_attribute("data-state", "open")
        await page.click("#terminal-control")
        await expect(page.locator("#terminal")).to_have_attribute("data-control", "yes")
        await page.locator("#terminal .xterm-helper-textarea").focus()
        await page.keyboard.type("echo at-$(hostname)-$((6*7))")
        await page.keyboard.press("Enter")
        await expect(page.locator("#terminal .xterm-rows")).to_contain_text("at-bob-42", timeout=20_000)

        # The terminal fills its box (xterm's fit addon), and the shell is told each new size.
        narrow = await resized(page, 500)
        wide = await resized(page, 1400)
        print(f"terminal size at 500 px: {narrow}, at 1400 px: {wide}")
        assert narrow[1] < wide[1], (narrow, wide)  # the columns the box has room for, not xterm's fixed 80


async def resized(page: Page, width: int) -> tuple[int, int]:
    """The shell's size once the window is `width` pixels wide and the terminal has been fitted to it."""
    screen = "document.querySelector('#terminal .xterm-screen').getBoundingClientRect().width"
    before = await page.evaluate(screen)
    await page.set_viewport_size({"width": width, "height": 800})
    await page.wait_for_function(f"() => {screen} !== {before}")  # refitted: the new size is on its way
    return await terminal_size(page, f"at{width}")


async def terminal_size(page: Page, tag: str) -> tuple[int, int]:
    """The shell's own `stty size` (rows, columns), typed into the terminal."""
    await page.keyboard.type(f"echo {tag}-$(stty size | tr ' ' x)-end")
    await page.keyboard.press("Enter")
    rows = page.locator("#terminal .xterm-rows")
    await expect(rows).to_contain_text(re.compile(rf"{tag}-\d+x\d+-end"))
    found = re.search(rf"{tag}-(\d+)x(\d+)-end", await rows.inner_text())
    assert found is not None
    return int(found[1]), int(found[2])
