"""Reading the dashboard's event stream as a browser does: `id`, `event` and `data` fields, a blank line ends one."""

from __future__ import annotations

import asyncio
import json
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx2 as httpx


@dataclass
class Sse:
    event: str
    data: str
    id: str | None

    def json(self) -> Any:
        return json.loads(self.data)


_lines: weakref.WeakKeyDictionary[httpx.Response, AsyncIterator[str]] = weakref.WeakKeyDictionary()


async def read(response: httpx.Response, until: int, kind: str = "hive", timeout: float = 15) -> list[Sse]:
    """The stream's next events until `until` of `kind` have come (pings and hellos are kept too); a stream can be
    read like this again and again."""
    lines = _lines.setdefault(response, response.aiter_lines())
    seen: list[Sse] = []
    fields: dict[str, str] = {}
    async with asyncio.timeout(timeout):
        async for line in lines:
            if line == "":
                if fields:
                    seen.append(Sse(fields.get("event", "message"), fields.get("data", ""), fields.get("id")))
                    fields = {}
                    if sum(e.event == kind for e in seen) >= until:
                        return seen
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
    return seen
