"""An agent's page over its real harness (the real claude CLI against the scripted Messages API): `/model` changes
the model chip, and a turn is shown live as it runs."""

from __future__ import annotations

import re
from contextlib import AsyncExitStack
from pathlib import Path

from playwright.async_api import Browser, Page, expect

from hive_dashboard.__main__ import start
from hivetest.harness import Scene, scene
from hivetest.hive import TestHive
from hivetest.messages_api import Text, ToolUse
from hyperhive.wire.models import AgentPolicy, BashPolicy

from .conftest import Running, dashboard_settings, log_in

POLICY = AgentPolicy(  # type: ignore[call-arg]
    agent="alice", model="scripted-model-a", allowedRecipients=["bob"], allowedBash=BashPolicy(allow=["echo *"])
)


async def alices_page(
    stack: AsyncExitStack, browser: Browser, hive: TestHive, database_url: str, tmp_path: Path
) -> tuple[Scene, Page]:
    """alice's harness, a broker, and bob who writes to her; the dashboard; alice's page, live."""
    s = await scene(stack, hive, tmp_path, POLICY)
    state = tmp_path / "hive-state"
    dashboard = Running(await start(stack, dashboard_settings(hive, database_url, state)), state)
    page = await log_in(browser, dashboard)
    await page.goto(dashboard.url + "/agents/alice")
    await expect(page.locator("#conn")).to_have_text("live")
    return s, page


async def send(page: Page, text: str) -> None:
    await page.fill("#agent-body", text)
    await page.click("#agent-send button[type=submit]")


async def test_model_changes_the_chip_and_a_turn_is_shown_as_it_runs(
    browser: Browser, hive: TestHive, database_url: str, tmp_path: Path
) -> None:
    async with AsyncExitStack() as stack:
        s, page = await alices_page(stack, browser, hive, database_url, tmp_path)
        chip = page.locator('#agent-row [data-agent="alice"] .model')

        await send(page, "/model scripted-model-b")
        await expect(page.locator("#agent-reply")).to_contain_text("scripted-model-b")
        await expect(chip).to_have_text("scripted-model-b *")  # pushed by the harness's turn_state
        await send(page, "/model default")
        await expect(chip).to_have_text("scripted-model-a")

        s.api.script([ToolUse("Bash", {"command": "echo hello from bash"})], [Text("Hello from the scripted model.")])
        await s.bob.send("alice", "say hello")
        result = await s.harness.run_once(wait=30)
        assert result is not None
        turn = page.locator("#turn")
        await expect(turn.locator(".tool b")).to_have_text("Bash")
        await expect(turn.locator(".tool pre")).to_contain_text("echo hello from bash")
        await expect(turn.locator("details.result")).not_to_have_attribute("open", "")  # folded
        await expect(turn.locator("details.result pre")).to_contain_text("hello from bash")
        await expect(turn.locator(".assistant").last).to_have_text("Hello from the scripted model.")
        await expect(turn.locator(".hint").last).to_contain_text(" ms")
        await expect(page.locator('#agent-row [data-agent="alice"] .turn')).to_contain_text("s ago")


async def test_the_stats_charts_fill_in_live_as_turns_run(
    browser: Browser, hive: TestHive, database_url: str, tmp_path: Path
) -> None:
    """The agent page is open before any turn: each turn's figures are recorded and the charts read them again at
    the feed's `stats` event; the hive page charts the hive-wide series and ranks alice by cost."""
    async with AsyncExitStack() as stack:
        s, page = await alices_page(stack, browser, hive, database_url, tmp_path)
        turns = page.locator('[data-chart="turns"]')
        await expect(turns).to_have_attribute("data-points", "0")
        for text in ("one", "two"):
            s.api.script([ToolUse("Bash", {"command": f"echo {text}"})], [Text(f"Said {text}.")])
            await s.bob.send("alice", f"say {text}")
            assert await s.harness.run_once(wait=30) is not None
        await expect(turns).to_have_attribute("data-points", re.compile(r"^[1-9]"))
        await expect(turns.locator("canvas")).to_have_count(1)
        await expect(page.locator('[data-chart="duration"]')).to_have_attribute("data-points", re.compile(r"^[1-9]"))
        await expect(page.locator('[data-totals="tool"]')).to_contain_text("Bash")
        await expect(page.locator('[data-totals="turn.exit"]')).to_contain_text("ok")
        await expect(page.locator('[data-totals="turn.received"]')).to_contain_text("peer")

        await page.click("#hive-link")
        await expect(page.locator('[data-chart="turns"]')).to_have_attribute("data-points", re.compile(r"^[1-9]"))
        await expect(page.locator('[data-top="cost"] td').first).to_have_text("alice")
