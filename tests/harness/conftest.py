"""The harness's tests run on the event loop the harness runs on (`hive_harness.__main__.LOOP`), which is not the
services' uvloop: what is tested is what runs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from hive_harness.__main__ import LOOP


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    return {"asyncio": LOOP}
