"""Harness test helpers: a harness for an agent, running the real claude CLI against the scripted Messages API."""

from contextlib import AsyncExitStack
from pathlib import Path

from hive_broker.__main__ import start as start_broker
from hive_harness.harness import Harness, HarnessSettings
from hivetest.hive import TestHive
from hivetest.messages_api import MessagesApi
from hyperhive.wire.models import AgentPolicy

from ..broker.conftest import Agent, Agents, broker_settings

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


async def alice_and_bob(
    stack: AsyncExitStack, hive: TestHive, tmp_path: Path, policy: AgentPolicy
) -> tuple[Path, Path, Agent]:
    """A broker; alice, whose harness is under test, with `policy` in her state dir; and bob, who writes to her.
    Returns alice's credential, alice's state dir, and bob."""
    agents = Agents(hive, await start_broker(stack, broker_settings(hive)))
    seed = hive.add_agent("alice")
    await agents.set_policy("alice", list(policy.allowed_recipients))
    bob = await agents.agent("bob", ["alice"])
    state = tmp_path / "alice"
    state.mkdir()
    (state / "policy.json").write_text(policy.model_dump_json(by_alias=True))
    return seed, state, bob
