"""The real claude CLI as the tests run it: this checkout's npm install, offline against the scripted Messages API
(`hivetest.messages_api`)."""

from __future__ import annotations

from hivectl.layout import checkout_claude

CLAUDE = checkout_claude()
SCRIPTED_ENV = {
    "ANTHROPIC_API_KEY": "scripted",
    "DISABLE_TELEMETRY": "1",
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    "CLAUDE_CODE_MAX_RETRIES": "0",
}
