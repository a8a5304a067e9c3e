"""Harness test helpers: a harness for an agent, running the real claude CLI against the scripted Messages API."""

from pathlib import Path

from hive_harness.harness import Harness, HarnessSettings
from hivetest.hive import TestHive
from hivetest.messages_api import MessagesApi

CLAUDE = Path(__file__).parents[2] / "node_modules" / ".bin" / "claude"
SCRIPTED_ENV = {
    "ANTHROPIC_API_KEY": "scripted",
    "DISABLE_TELEMETRY": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0",
}


async def harness_for(hive: TestHive, agent: str, seed: Path, state: Path, api: MessagesApi) -> Harness:
    """`agent`'s harness on this test's NATS, its inbox open, its CLI pointed at the scripted API."""
    settings = HarnessSettings(
        nats_url=hive.url,
        nats_creds=seed,
        state_dir=state,
        agent=agent,
        claude=[str(CLAUDE)],
        claude_env={**SCRIPTED_ENV, "ANTHROPIC_BASE_URL": api.url},
    )
    harness = Harness(await hive.connect(agent), settings)
    await harness.open()
    return harness
