"""The dashboard in a real headless Chromium, over real services: what an operator sees and does, waited on as the
page shows it (Playwright's `expect`), never on time."""

from __future__ import annotations

import asyncio
import os
import re
import signal
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from hive_approver.service import Approver
from hivetest.agents import Agents, Caller, operator_call
from hivetest.hive import TestHive
from hivetest.services import TestSpawner
from hyperhive import events
from hyperhive.process import free_port, start_service
from hyperhive.wire import subjects
from hyperhive.wire.models import (
    AgentStateChanged,
    Approval,
    AskReply,
    AskRequest,
    Question,
    QuestionsReply,
    QuestionsRequest,
)

from .conftest import Restartable, Running, log_in


async def test_an_operator_logs_in_with_the_password_and_the_page_goes_live(page: Page) -> None:
    await expect(page.locator("#approvals-empty")).to_be_visible()
    await expect(page.locator(".who")).to_have_text("operator")


async def test_a_wrong_password_shows_an_error_on_the_login_page(browser: Browser, dashboard: Running) -> None:
    page = await (await browser.new_context()).new_page()
    await page.goto(dashboard.url + "/login")
    await page.fill("#password", "not it")
    await page.click("button[type=submit]")
    await expect(page.locator("#login-error")).to_have_text("Wrong password.")


async def test_an_approval_appears_without_reloading_and_is_approved(
    page: Page, alice: Caller, approver: Approver, hive: TestHive
) -> None:
    asked = await alice.request(
        "tool_permission", agent="alice", tool="Bash", input={"command": "make deploy", "cwd": "/state/app"}
    )
    card = page.locator(f'[data-approval="{asked.id}"]')
    await expect(card.locator(".cmd")).to_have_text("make deploy")
    await expect(card).to_contain_text("in /state/app")
    await card.locator(".note-input").fill("go ahead")
    await card.locator("button.approve").click()
    await expect(card).to_have_count(0)
    await expect(page.locator("#approvals-empty")).to_be_visible()
    decided = await approver.store.approval(asked.id)
    assert (decided.status, decided.note) == ("approved", "go ahead")
    assert isinstance(decided, Approval)


async def test_a_question_is_answered_from_its_options(
    page: Page, alice: Caller, approver: Approver, hive: TestHive
) -> None:
    asked: AskReply = await alice.call("ask", AskRequest(question="Ship it?", options=["yes", "no"]), AskReply)
    card = page.locator(f'[data-question="{asked.id}"]')
    await expect(card.locator(".text")).to_have_text("Ship it?")
    await card.get_by_label("yes").check()
    other: AskReply = await alice.call("ask", AskRequest(question="And then?"), AskReply)
    await expect(page.locator(f'[data-question="{other.id}"]')).to_be_visible()  # the page changed meanwhile
    await expect(card.get_by_label("yes")).to_be_checked()  # and kept what the operator picked
    await card.locator("button.answer").click()
    await expect(card).to_have_count(0)
    nc = await hive.connect("operator")
    answered = await operator_call(nc, "questions", QuestionsRequest(status="answered"), QuestionsReply)
    assert [(q.id, q.answer) for q in answered.questions] == [(asked.id, "yes")]
    await page.locator(f'[data-question="{other.id}"] textarea').fill("Then we rest.")
    await page.locator(f'[data-question="{other.id}"] button.answer').click()
    await expect(page.locator(f'[data-question="{other.id}"]')).to_have_count(0)
    assert all(isinstance(q, Question) for q in answered.questions)


async def publish(hive: TestHive, states: list[str]) -> None:
    nc = await hive.connect(subjects.SPAWNER)
    for state in states:
        await events.publish(nc, "agent_state", AgentStateChanged(agent="bob", state=state), about="bob")  # type: ignore[arg-type]


async def applied(page: Page, count: int) -> list[int]:
    await expect(page.locator("#conn")).to_have_attribute("data-applied", str(count))
    seqs: list[int] = await page.evaluate("window.hiveLive.applied")
    return seqs


async def test_the_stream_cut_while_events_are_published_shows_every_event_exactly_once(
    browser: Browser, restartable: Restartable, hive: TestHive
) -> None:
    page = await log_in(browser, await restartable.start())
    await publish(hive, ["running", "stopped", "running"])
    before = await applied(page, 3)
    await restartable.stop()  # the stream is cut: the dashboard is gone
    await expect(page.locator("#conn")).to_have_text("reconnecting")
    await publish(hive, ["crashed", "stopped", "running"])
    await restartable.start()  # the same port; the page reconnects by itself with Last-Event-ID
    await expect(page.locator("#conn")).to_have_text("live")
    await publish(hive, ["stopped"])
    seqs = await applied(page, 7)
    assert seqs == list(range(before[0], before[0] + 7))
    assert await page.evaluate("window.hiveLive.duplicates") == 0
    assert await page.evaluate("window.hiveLive.opens") == 1  # the browser's own reconnect, not a new EventSource
    await expect(page.locator('[data-agent="bob"] .badge')).to_have_text("stopped")


async def test_a_browser_notification_is_raised_only_while_the_tab_is_hidden(
    browser: Browser, dashboard: Running, alice: Caller, approver: Approver, agents: Agents
) -> None:
    bob = await agents.agent("bob", recipients=["operator"])
    page = await log_in(browser, dashboard, permissions=["notifications"])
    await page.evaluate(
        """() => {
        window.raised = [];
        window.Notification = class { constructor(title, options) { window.raised.push(title); } };
        window.Notification.permission = "granted";
        Object.defineProperty(document, "hidden", { configurable: true, get: () => window.tabHidden === true });
    }"""
    )
    visible = await alice.request("tool_permission", agent="alice", tool="Bash", input={"command": "ls"})
    await expect(page.locator(f'[data-approval="{visible.id}"]')).to_be_visible()
    await page.evaluate("window.tabHidden = true")
    hidden = await alice.request("tool_permission", agent="alice", tool="Bash", input={"command": "pwd"})
    await expect(page.locator(f'[data-approval="{hidden.id}"]')).to_be_visible()
    asked: AskReply = await alice.call("ask", AskRequest(question="Lunch?"), AskReply)
    await expect(page.locator(f'[data-question="{asked.id}"]')).to_be_visible()
    await bob.send("operator", "the build is green")
    await expect(page.locator("#inbox .message")).to_have_count(1)
    raised = [f"Approval #{hidden.id}: tool_permission", "alice asks", "Message from bob"]
    assert await page.evaluate("window.raised") == raised
    await page.click("#mute")
    await expect(page.locator("#mute")).to_have_text("notifications off")
    muted = await alice.request("tool_permission", agent="alice", tool="Bash", input={"command": "id"})
    await expect(page.locator(f'[data-approval="{muted.id}"]')).to_be_visible()
    assert await page.evaluate("window.raised") == raised
    await page.reload()
    await expect(page.locator("#mute")).to_have_text("notifications off")  # the mute persists


async def test_a_password_changed_on_the_page_ends_the_session_and_the_new_one_logs_in(
    page: Page, dashboard: Running
) -> None:
    await page.click("#password-section summary")
    await page.fill("#password-current", "not the password")
    await page.fill("#password-new", "a brand new password")
    await page.click("#password-form button[type=submit]")
    await expect(page.locator("#notice")).to_have_text("not_allowed: The current password is wrong.")
    await page.fill("#password-current", dashboard.password)
    await page.click("#password-form button[type=submit]")
    await expect(page).to_have_url(re.compile(r"/login$"))
    await page.goto(dashboard.url + "/")
    await expect(page).to_have_url(re.compile(r"/login\?next=/$"))  # the old session is over
    await page.fill("#password", "a brand new password")
    await page.click("button[type=submit]")
    await expect(page.locator("#conn")).to_have_text("live")


async def test_approvals_are_decided_from_the_keyboard(page: Page, alice: Caller, approver: Approver) -> None:
    first = await alice.request("tool_permission", agent="alice", tool="Bash", input={"command": "ls"})
    second = await alice.request("tool_permission", agent="alice", tool="Bash", input={"command": "rm -r tmp"})
    await expect(page.locator(f'[data-approval="{second.id}"]')).to_be_visible()
    await expect(page.locator(f'[data-approval="{first.id}"]')).to_have_class(re.compile(r"\bselected\b"))
    await page.keyboard.press("j")
    await expect(page.locator(f'[data-approval="{second.id}"]')).to_have_class(re.compile(r"\bselected\b"))
    await page.keyboard.press("d")
    await expect(page.locator(f'[data-approval="{second.id}"]')).to_have_count(0)
    await page.keyboard.press("a")
    await expect(page.locator(f'[data-approval="{first.id}"]')).to_have_count(0)
    assert (await approver.store.approval(first.id)).status == "approved"
    assert (await approver.store.approval(second.id)).status == "denied"


async def test_a_config_change_shows_its_frozen_diff_before_its_buttons(
    page: Page, manager: Caller, alice: Caller, spawner: TestSpawner
) -> None:
    spawner.knows("abc1234")
    asked = await manager.request("apply_commit", agent="alice", commit_ref="abc1234", description="a new model")
    card = page.locator(f'[data-approval="{asked.id}"]')
    await expect(card.locator(".diff .line.add")).to_have_text("+ model = x;")
    diff_box = await card.locator(".diff").bounding_box()
    button_box = await card.locator("button.approve").bounding_box()
    assert diff_box is not None
    assert button_box is not None
    assert diff_box["y"] + diff_box["height"] <= button_box["y"]


async def test_a_stream_gone_silent_is_noticed_by_its_pings_and_opened_again(
    browser: Browser, hive: TestHive, database_url: str, broker: object, tmp_path: Path
) -> None:
    """The dashboard process is frozen (SIGSTOP): its connection stays open but says nothing. The page notices the
    missing pings, opens a new stream, and once the dashboard runs again shows what happened meanwhile, once."""
    state = tmp_path / "hive-state"
    port = free_port()
    env = {
        **hive.service_env(subjects.DASHBOARD),
        "HIVE_DATABASE_URL": database_url,
        "HIVE_STATE_DIR": str(state),
        "HIVE_DASHBOARD_PORT": str(port),
        "HIVE_DASHBOARD_PING_SECONDS": "0.3",
    }
    child = await asyncio.to_thread(start_service, "dashboard", env)
    try:
        running = Running(None, state, at=f"http://127.0.0.1:{port}")
        page = await log_in(browser, running)
        await publish(hive, ["running"])
        before = await applied(page, 1)
        os.kill(child.pid, signal.SIGSTOP)
        try:
            await expect(page.locator("#conn")).to_have_text("reconnecting")
            await publish(hive, ["stopped", "running"])
        finally:
            os.kill(child.pid, signal.SIGCONT)
        await expect(page.locator("#conn")).to_have_text("live")
        seqs = await applied(page, 3)
        assert seqs == [before[0], before[0] + 1, before[0] + 2]
        assert await page.evaluate("window.hiveLive.duplicates") == 0
        assert await page.evaluate("window.hiveLive.opens") >= 2  # the page opened a new stream itself
    finally:
        await asyncio.to_thread(child.stop)


async def test_what_an_agent_writes_is_shown_as_text_and_never_run(
    browser: Browser, dashboard: Running, alice: Caller, approver: Approver
) -> None:
    """In the page's embedded snapshot (a reload) and in what the stream adds, markup is only ever text."""
    attack = '</script><img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'
    page = await log_in(browser, dashboard)
    live = await alice.request("tool_permission", agent="alice", tool="Bash", input={"command": attack})
    await expect(page.locator(f'[data-approval="{live.id}"] .cmd')).to_have_text(attack)
    await alice.call("ask", AskRequest(question=attack, options=[attack]), AskReply)
    await expect(page.locator(".question .text")).to_have_text(attack)
    await page.reload()
    await expect(page.locator(f'[data-approval="{live.id}"] .cmd')).to_have_text(attack)
    await expect(page.locator(".question .option")).to_have_text(attack)
    assert await page.evaluate("window.pwned") is None
    assert await page.locator("img").count() == 0
