"""The hyperhive MCP tools as the model uses them: the real claude CLI, scripted by the Messages API, calls them."""

import asyncio
import json
import urllib.error
import urllib.request
from contextlib import AsyncExitStack
from pathlib import Path

from hive_broker.__main__ import start as start_broker
from hive_harness.tools import ToolServer
from hivetest.agents import Agents
from hivetest.hive import TestHive
from hivetest.messages_api import MessagesApi, Text, ToolUse, serve_messages_api
from hivetest.services import broker_settings
from hyperhive.files import write_atomic

from .test_claude_cli import run_claude


async def mcp_config(stack: AsyncExitStack, hive: TestHive, agent: str, state: Path) -> list[str]:
    """The CLI flags that give an agent its hyperhive tools (served on loopback, as the harness does), nothing else."""
    tools = ToolServer(await hive.connect(agent), agent, state)
    await tools.start(stack)
    path = state / "mcp.json"
    await asyncio.to_thread(write_atomic, path, json.dumps({"mcpServers": {"hyperhive": tools.entry()}}))
    return ["--mcp-config", str(path), "--strict-mcp-config", "--allowedTools", "mcp__hyperhive"]


async def turn(api: MessagesApi, home: Path, flags: list[str]) -> list[dict[str, object]]:
    # The CLI blocks; it runs in a thread so this event loop keeps serving the broker meanwhile.
    return await asyncio.to_thread(run_claude, api, home, "you have a new message", "claude-sonnet-4-5", flags)


async def test_the_model_sends_a_message_that_the_other_agent_receives(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        agents = Agents(hive, await start_broker(stack, broker_settings(hive)))
        hive.add_agent("alice")
        await agents.set_policy("alice", ["bob"])
        bob = await agents.agent("bob", [])
        with serve_messages_api() as api:
            api.script(
                [ToolUse("mcp__hyperhive__send", {"to": "bob", "body": "hello from the model"})], [Text("Sent it.")]
            )
            events = await turn(api, tmp_path / "home", await mcp_config(stack, hive, "alice", tmp_path / "alice"))
            tool_result = json.dumps(api.requests[-1]["messages"][-1])
        [init] = [e for e in events if e.get("subtype") == "init"]
        servers = {s["name"]: s["status"] for s in init["mcp_servers"]}  # type: ignore[attr-defined]
        assert servers == {"hyperhive": "connected"}
        assert "mcp__hyperhive__request_spawn" not in init["tools"]  # type: ignore[operator]  # not the manager
        [result] = [e for e in events if e.get("type") == "result"]
        assert result["is_error"] is False
        assert "Sent (message" in tool_result
        [m] = (await bob.recv(wait=10)).messages
        assert (m.sender, m.body) == ("alice", "hello from the model")


async def test_a_refusal_reaches_the_model_as_a_sentence(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        agents = Agents(hive, await start_broker(stack, broker_settings(hive)))
        hive.add_agent("alice")
        await agents.set_policy("alice", ["manager"])
        await agents.agent("bob", [])
        with serve_messages_api() as api:
            api.script([ToolUse("mcp__hyperhive__send", {"to": "bob", "body": "psst"})], [Text("Understood.")])
            events = await turn(api, tmp_path / "home", await mcp_config(stack, hive, "alice", tmp_path / "alice"))
            tool_result = json.dumps(api.requests[-1]["messages"][-1])
        [result] = [e for e in events if e.get("type") == "result"]
        assert result["is_error"] is False  # the turn goes on; the model reads why
        assert "is_error" in tool_result
        assert "You may not send to 'bob'" in tool_result


async def test_the_manager_has_its_tools(hive: TestHive, tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        await start_broker(stack, broker_settings(hive))
        hive.add_agent("manager")
        with serve_messages_api() as api:
            api.script([Text("Ready.")])
            events = await turn(api, tmp_path / "home", await mcp_config(stack, hive, "manager", tmp_path / "manager"))
        [init] = [e for e in events if e.get("subtype") == "init"]
        tools = set(init["tools"])  # type: ignore[arg-type]
        wanted = {
            "send",
            "recv",
            "ask",
            "whoami",
            "request_spawn",
            "request_spawn_draft",
            "request_spawn_commit",
            "request_apply_commit",
            "start",
            "stop",
            "restart",
        }
        assert {f"mcp__hyperhive__{t}" for t in wanted} <= tools


async def test_the_tools_refuse_a_caller_without_the_token(hive: TestHive, tmp_path: Path) -> None:
    """Agents of the local backend share the host's network: only the holder of the 0600 mcp.json gets in."""
    hive.add_agent("alice")
    async with AsyncExitStack() as stack:
        await start_broker(stack, broker_settings(hive))
        tools = ToolServer(await hive.connect("alice"), "alice", tmp_path)
        await tools.start(stack)
        url = tools.entry()["url"]
        client_info = {"name": "probe", "version": "1"}
        params = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": client_info}
        hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params}

        def post(headers: dict[str, str]) -> tuple[int, bytes]:
            kinds = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
            request = urllib.request.Request(url, json.dumps(hello).encode(), {**kinds, **headers}, method="POST")  # noqa: S310
            try:
                with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - loopback http
                    return answer.status, answer.read()
            except urllib.error.HTTPError as refused:
                return refused.code, b""

        for headers in ({}, {"Authorization": "Bearer guessed"}):
            assert (await asyncio.to_thread(post, headers))[0] == 401
        status, body = await asyncio.to_thread(post, tools.entry()["headers"])
        assert status == 200
        assert json.loads(body)["result"]["serverInfo"]["name"] == "hyperhive"
