"""The harness's own MCP server (`hive_harness.mcp`) at its edges, over real HTTP on loopback: what the CLI sends
works (the CLI tests cover that end to end), and what it never sends is answered with an error, never a crash."""

import asyncio
import json
import urllib.error
import urllib.request
from contextlib import AsyncExitStack
from pathlib import Path

from hive_broker.__main__ import start as start_broker
from hive_harness.mcp import McpServer, Tool, ToolError
from hive_harness.tools import ToolServer
from hivetest.hive import TestHive
from hivetest.services import broker_settings


def post(url: str, token: str, body: bytes, method: str = "POST") -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)  # noqa: S310 - our loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - our loopback server
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def rpc(method: str, params: object = None, id: object = 1) -> dict[str, object]:
    message: dict[str, object] = {"jsonrpc": "2.0", "method": method, "id": id}
    if params is not None:
        message["params"] = params
    return message


async def test_the_tool_server_answers_every_odd_request_without_failing(hive: TestHive, tmp_path: Path) -> None:
    hive.add_agent("alice")
    async with AsyncExitStack() as stack:
        await start_broker(stack, broker_settings(hive))  # the tools' inbox is opened through it
        tools = ToolServer(await hive.connect("alice"), "alice", tmp_path)
        await tools.start(stack)
        url = tools.entry()["url"]

        async def ask(body: bytes, method: str = "POST") -> tuple[int, bytes]:
            return await asyncio.to_thread(post, url, tools.token, body, method)

        status, body = await ask(json.dumps(rpc("initialize", {"protocolVersion": "2025-06-18"})).encode())
        assert status == 200
        assert json.loads(body)["result"]["protocolVersion"] == "2025-06-18"
        status, body = await ask(json.dumps(rpc("initialize", {"protocolVersion": "1999-01-01"})).encode())
        assert json.loads(body)["result"]["protocolVersion"] == "2025-11-25"  # ours, for a version we do not know
        assert (await ask(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode()))[0] == 202
        assert (await ask(b"", "GET"))[0] == 405
        odd = {
            b"not json": -32700,
            b"[1, 2]": -32600,
            json.dumps({"jsonrpc": "1.0", "method": "ping", "id": 1}).encode(): -32600,
            json.dumps(rpc("resources/list")).encode(): -32601,
            json.dumps(rpc("tools/call", ["not", "an", "object"])).encode(): -32602,
        }
        for sent, code in odd.items():
            status, body = await ask(sent)
            assert (status, json.loads(body)["error"]["code"]) == (200, code), sent
        listed = json.loads((await ask(json.dumps(rpc("tools/list")).encode()))[1])["result"]["tools"]
        assert {t["name"] for t in listed} == {"send", "recv", "ask", "whoami"}
        send = next(t for t in listed if t["name"] == "send")
        assert send["inputSchema"]["required"] == ["to", "body"]
        calls = {
            ("nosuch", "{}"): "There is no tool 'nosuch'",
            ("send", '{"to": "bob"}'): "Argument 'body': Field required.",
            ("recv", '{"max": "many"}'): "Argument 'max'",
            ("send", '{"to": "../etc", "body": "x"}'): "to",
        }
        for (name, arguments), said in calls.items():
            call = rpc("tools/call", {"name": name, "arguments": json.loads(arguments)})
            result = json.loads((await ask(json.dumps(call).encode()))[1])["result"]
            assert result["isError"] is True, (name, result)
            assert said in result["content"][0]["text"], (name, result)
        whoami = json.loads((await ask(json.dumps(rpc("tools/call", {"name": "whoami"})).encode()))[1])["result"]
        assert (whoami["isError"], whoami["content"][0]["text"].startswith("You are alice")) == (False, True)
        assert (await asyncio.to_thread(post, url, "wrong-token", b"{}"))[0] == 401


async def test_a_tool_that_fails_inside_is_an_error_result_and_the_server_goes_on() -> None:
    async def broken() -> str:
        """A tool with a bug."""
        raise RuntimeError("a bug")

    async def refusing() -> str:
        """A tool that says no."""
        raise ToolError("No, and here is why.")

    server = McpServer("t", "", [Tool.of(broken), Tool.of(refusing)])
    answer = await server.answer(rpc("tools/call", {"name": "broken"}))
    assert answer is not None
    assert answer["result"]["isError"] is True  # type: ignore[index]
    answer = await server.answer(rpc("tools/call", {"name": "refusing"}))
    assert answer is not None
    assert answer["result"]["content"][0]["text"] == "No, and here is why."  # type: ignore[index]
    assert await server.answer(rpc("ping")) == {"jsonrpc": "2.0", "id": 1, "result": {}}
