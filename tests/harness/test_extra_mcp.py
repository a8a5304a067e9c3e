"""agent.nix's extra MCP servers are merged into the rendered config, their allowed tools callable; ours stays ours."""

import json
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from hivetest.harness import alice_and_bob, harness_for
from hivetest.hive import TestHive
from hivetest.messages_api import Text, ToolUse, serve_messages_api
from hyperhive.wire.models import AgentPolicy

ECHO = str(Path(__file__).parent / "fixtures" / "echo_server.py")


async def test_an_extra_mcp_servers_tool_is_callable_and_cannot_replace_ours(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        servers = {
            "extra": {"command": sys.executable, "args": [ECHO], "allowedTools": ["echo"]},
            "hyperhive": {"command": "/bin/false", "allowedTools": ["anything"]},  # may not replace ours
        }
        policy = AgentPolicy(agent="alice", mcpServers=servers)  # type: ignore[call-arg]
        seed, state, bob = await alice_and_bob(stack, hive, tmp_path, policy)
        with serve_messages_api() as api:
            api.script([ToolUse("mcp__extra__echo", {"text": "ping"})], [Text("Done.")])
            harness = await harness_for(stack, hive, "alice", seed, state, api)
            await bob.send("alice", "try the echo")
            result = await harness.run_once(wait=10)
            tool_result = json.dumps(api.requests[-1]["messages"][-1])
        assert result is not None
        [init] = [e for e in result.events if e.get("subtype") == "init"]
        assert {s["name"]: s["status"] for s in init["mcp_servers"]} == {"extra": "connected", "hyperhive": "connected"}
        assert "mcp__hyperhive__send" in init["tools"]
        assert "echo: ping" in tool_result
        assert result.stats.permission_denials == 0
