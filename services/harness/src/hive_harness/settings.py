"""The harness's settings (`HIVE_` environment variables), set by the spawner for each agent."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from hyperhive.settings import HiveSettings


class HarnessSettings(HiveSettings):
    agent: str = Field(description="The agent this harness runs (its credential must be that agent's).")
    claude: list[str] = Field(default_factory=lambda: ["claude"], description="How to run the claude CLI (JSON list).")
    claude_env: dict[str, str] = Field(
        default_factory=dict, description="Extra environment for the CLI (API base URL and key, …)."
    )
    heartbeat_seconds: float = Field(10.0, gt=0, description="How often the harness says it is alive.")
    backoff_seconds: float = Field(5.0, gt=0, description="First wait before retrying a turn the API refused.")
    backoff_max_seconds: float = Field(300.0, gt=0, description="The longest wait between retries.")
    recv_wait_seconds: float = Field(180.0, gt=0, le=180, description="How long one wait for messages lasts.")
    policy_file: Path = Field(
        Path("/run/hive/policy.json"),
        description="The agent's applied policy, written by the spawner where the agent cannot write (read-only).",
    )
    credential_file: Path = Field(
        Path("/run/hive/credential"),
        description="The hive's Anthropic credential (`hivectl login`), handed over by the spawner beside the policy "
        "and read at every turn; when it is there it is the CLI's API key or subscription token.",
    )
    cli_home: Path = Field(
        Path("/run/hive/home"),
        description="HOME of the CLI and its Bash: a directory the agent cannot write (it need not exist), so no "
        "shell startup file, gitconfig or user setting of the agent's is read.",
    )
