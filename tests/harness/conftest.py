"""The harness's tests run on the event loop the harness runs on (`hive_harness.__main__.LOOP`), which is not the
services' uvloop: what is tested is what runs."""

from __future__ import annotations

import pytest

from hive_harness.__main__ import LOOP
from hyperhive.runtime import LoopFactory


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, LoopFactory]:
    return {"asyncio": LOOP}
