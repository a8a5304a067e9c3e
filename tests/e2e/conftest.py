"""End-to-end fixtures."""

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def spawner_state() -> Iterator[Path]:
    """Agents' state must be reachable by their own uids; pytest's tmp dirs are not (0700 parents)."""
    root = Path(tempfile.mkdtemp(prefix="hive-spawner-", dir="/var/tmp"))
    root.chmod(0o711)
    yield root
    shutil.rmtree(root, ignore_errors=True)
