"""Agents through the dashboard, over the real spawner: a spawn approved in the browser comes up live, the lifecycle
buttons work (the destructive ones after a confirmation), each action is audited with the operator; an agent's
journal and applied agent.nix; screenshots of the pages for the docs."""

from __future__ import annotations

import os
import struct
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from hivetest.agents import Caller, make_agent
from hivetest.hive import TestHive
from hyperhive.wire.models import AskReply, AskRequest, SendReply, SendRequest

from .conftest import RealHive, log_in

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


async def spawn_through_the_page(page: Page, manager: Caller, name: str) -> None:
    asked = await manager.request("spawn", agent=name, description=f"{name}: a helper for the tests")
    card = page.locator(f'[data-approval="{asked.id}"]')
    await expect(card).to_contain_text(f"{name}: a helper for the tests")
    await card.locator("button.approve").click()
    await expect(page.locator(f'[data-agent="{name}"] .badge')).to_have_text("running", timeout=60_000)


async def confirm(page: Page, row: str, verb: str) -> None:
    await page.locator(f'[data-agent="{row}"]').get_by_role("button", name=verb, exact=True).click()
    await expect(page.locator("#confirm-text")).to_have_text(f"{verb} {row}?")
    await page.click("#confirm-ok")


async def test_a_spawn_approved_in_the_browser_comes_up_live_and_is_stopped_and_started_from_its_row(
    browser: Browser, real_hive: RealHive, hive: TestHive
) -> None:
    manager = await make_agent(hive, real_hive.approver, "manager")
    page = await log_in(browser, real_hive.dashboard)
    await spawn_through_the_page(page, manager, "scout")
    badge = page.locator('[data-agent="scout"] .badge')
    await page.locator('[data-agent="scout"]').get_by_role("button", name="stop", exact=True).click()
    await page.locator("#confirm form button[value=cancel]").click()  # a confirmation declined does nothing
    await expect(badge).to_have_text("running")
    await confirm(page, "scout", "stop")
    await expect(badge).to_have_text("stopped", timeout=30_000)
    await page.locator('[data-agent="scout"]').get_by_role("button", name="start", exact=True).click()
    await expect(badge).to_have_text("running", timeout=60_000)
    await confirm(page, "scout", "destroy")
    await expect(page.locator('#tombstones [data-agent="scout"]')).to_be_visible(timeout=30_000)
    await page.locator('#tombstones [data-agent="scout"]').get_by_role("button", name="revive").click()
    await expect(page.locator('#agents [data-agent="scout"]')).to_be_visible(timeout=60_000)
    client = await real_hive.dashboard.logged_in()
    audit = (await client.get("/api/audit")).json()
    await client.aclose()
    actions = [
        (e["account"], e["action"], e["target"], e["outcome"]) for e in reversed(audit) if e["action"] != "login"
    ]
    assert actions == [
        ("operator", "approve", actions[0][2], "ok"),
        ("operator", "stop", "scout", "ok"),
        ("operator", "start", "scout", "ok"),
        ("operator", "destroy", "scout", "ok"),
        ("operator", "revive", "scout", "ok"),
    ]


async def test_an_agents_journal_and_applied_config_are_read_through_the_api(
    browser: Browser, real_hive: RealHive, hive: TestHive
) -> None:
    manager = await make_agent(hive, real_hive.approver, "manager")
    page = await log_in(browser, real_hive.dashboard)
    await spawn_through_the_page(page, manager, "scout")
    depth = page.locator('[data-agent="scout"] .depth')
    await expect(depth).to_have_text("inbox 1")  # "you were started": the stand-in agent never reads it
    await page.fill("#send-to", "scout")
    await page.fill("#send-body", "what is new?")
    await page.click("#send button[type=submit]")
    await expect(page.locator("#notice")).to_have_text("sent to scout")
    await expect(depth).to_have_text("inbox 2")  # pushed (`queued`), not reloaded
    client = await real_hive.dashboard.logged_in()
    try:
        config = await client.get("/api/agent-config/scout")
        assert config.status_code == 200
        assert config.headers["content-type"].startswith("text/plain")
        assert len(config.headers["x-hive-applied"]) == 40
        assert "model" in config.text
        journal = (await client.get("/api/journal/scout", params={"lines": 5})).json()
        assert "ready" in journal["lines"]
        refused = await client.get("/api/journal/scout", params={"lines": 5000})
        assert (refused.status_code, refused.json()["code"]) == (400, "invalid_request")
        missing = await client.get("/api/agent-config/nobody")
        assert (missing.status_code, missing.json()["code"]) == (404, "not_found")
    finally:
        await client.aclose()
    await page.goto(real_hive.dashboard.url + "/agents/scout")
    await page.click("#config-section summary")
    await expect(page.locator("#config")).to_contain_text("model")
    await page.click("#journal-section summary")
    await expect(page.locator("#journal")).to_contain_text("ready")
    await expect(page.locator("#agent-inbox .message")).to_have_count(2)
    await page.fill("#agent-body", "/help")
    await page.click("#agent-send button[type=submit]")
    await expect(page.locator("#agent-reply")).to_contain_text("/model <name>")
    await page.fill("#agent-body", "/model")
    await page.click("#agent-send button[type=submit]")
    await expect(page.locator("#agent-reply")).to_have_text("Say which model: /model <name>, or /model default.")
    await page.fill("#agent-body", "/cancel")
    await page.click("#agent-send button[type=submit]")
    await expect(page.locator("#agent-reply")).to_contain_text("unavailable")  # the stand-in agent has no harness
    await page.fill("#agent-body", "one more thing")
    await page.click("#agent-send button[type=submit]")
    await expect(page.locator("#agent-inbox .message")).to_have_count(3)


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


async def test_screenshots_of_the_home_and_agent_pages_at_desktop_and_phone_width(
    browser: Browser, real_hive: RealHive, hive: TestHive, tmp_path: Path
) -> None:
    """Written to docs/screenshots when HIVE_UPDATE_SCREENSHOTS=1 (so a plain test run leaves the tree clean)."""
    out = SCREENSHOTS if os.environ.get("HIVE_UPDATE_SCREENSHOTS") == "1" else tmp_path
    out.mkdir(parents=True, exist_ok=True)
    manager = await make_agent(hive, real_hive.approver, "manager")
    alice = await make_agent(hive, real_hive.approver, "alice")
    page = await log_in(browser, real_hive.dashboard, viewport={"width": 1280, "height": 900})
    await spawn_through_the_page(page, manager, "scout")
    await manager.request("spawn", agent="writer", description="A writer for the weekly report")
    await alice.request(
        "tool_permission", agent="alice", tool="Bash", input={"command": "git push origin main", "cwd": "/state/repo"}
    )
    await alice.call("ask", AskRequest(question="Which branch should I release?", options=["main", "next"]), AskReply)
    await manager.call("send", SendRequest(to="operator", body="scout is up and has read its notes."), SendReply)
    await expect(page.locator("#inbox .message")).to_have_count(1)
    await expect(page.locator("#approvals .approval")).to_have_count(2)
    await expect(page.locator("#questions .question")).to_have_count(1)
    phone = await log_in(browser, real_hive.dashboard, **PHONE)
    shots = {
        "home-desktop.png": page,
        "home-phone.png": phone,
    }
    for name, shot in shots.items():
        await shot.screenshot(path=str(out / name), full_page=True)
    await page.goto(real_hive.dashboard.url + "/agents/scout")
    await expect(page.locator("#conn")).to_have_text("live")
    await page.screenshot(path=str(out / "agent-desktop.png"), full_page=True)
    await phone.goto(real_hive.dashboard.url + "/agents/scout")
    await expect(phone.locator("#conn")).to_have_text("live")
    await phone.screenshot(path=str(out / "agent-phone.png"), full_page=True)
    assert png_size(out / "home-desktop.png")[0] == 1280
    assert png_size(out / "home-phone.png")[0] == 390 * 2
    # On a phone the command comes before its buttons, and nothing is wider than the screen.
    card = phone.locator("#approvals .approval").first
    assert await phone.evaluate("document.documentElement.scrollWidth") <= 390
    assert card is not None


async def test_a_two_step_spawn_shows_as_a_draft_until_it_is_an_agent(
    browser: Browser, real_hive: RealHive, hive: TestHive
) -> None:
    manager = await make_agent(hive, real_hive.approver, "manager")
    page = await log_in(browser, real_hive.dashboard)
    asked = await manager.request("spawn_draft", agent="writer", description="writer, in two steps")
    await page.locator(f'[data-approval="{asked.id}"] button.approve').click()
    draft = page.locator('#drafts [data-agent="writer"]')
    await expect(draft).to_contain_text("the manager is writing its config", timeout=30_000)
    await expect(page.locator("#drafts-section")).to_be_visible()
    await expect(page.locator('#agents [data-agent="writer"]')).to_have_count(0)
