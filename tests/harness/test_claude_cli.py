"""The real `claude` CLI (from the project's package.json) against the scripted Messages API on loopback."""

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from hivetest.claude import CLAUDE, SCRIPTED_ENV
from hivetest.messages_api import ApiError, MessagesApi, Text, serve_messages_api


@pytest.fixture(scope="module")
def api() -> Iterator[MessagesApi]:
    with serve_messages_api() as scripted:
        yield scripted


def run_claude(
    api: MessagesApi, home: Path, prompt: str, model: str = "claude-sonnet-4-5", extra: list[str] | None = None
) -> list[dict[str, object]]:
    home.mkdir(parents=True, exist_ok=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(home), "ANTHROPIC_BASE_URL": api.url, **SCRIPTED_ENV}
    done = subprocess.run(
        [str(CLAUDE), "-p", prompt, "--output-format", "stream-json", "--verbose", "--model", model, *(extra or [])],
        env=env,
        cwd=home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def test_a_text_turn_round_trips_through_the_real_cli(api: MessagesApi, tmp_path: Path) -> None:
    api.script([Text("Hello from the script.")])
    events = run_claude(api, tmp_path, "say hello", model="scripted-model-1")
    [init] = [e for e in events if e.get("type") == "system" and e.get("subtype") == "init"]
    [result] = [e for e in events if e.get("type") == "result"]
    assert result["is_error"] is False
    assert result["result"] == "Hello from the script."
    assert init["model"] == "scripted-model-1"
    assert api.requests[-1]["model"] == "scripted-model-1"


def test_an_api_error_is_reported_as_an_error_result(api: MessagesApi, tmp_path: Path) -> None:
    api.script(ApiError(400, "invalid_request_error", "prompt is too long: 250000 tokens > 200000 maximum"))
    events = run_claude(api, tmp_path, "a long prompt")
    [result] = [e for e in events if e.get("type") == "result"]
    assert (result["is_error"], result["api_error_status"]) == (True, 400)
    assert "prompt is too long" in str(result["result"]).lower()  # how the harness will know to compact
