from pathlib import Path

import pytest
from pydantic import Field

from hyperhive.settings import HiveSettings, SettingsError, load


class NeedsDatabase(HiveSettings):
    database_url: str = Field(description="required")
    pool_size: int = 4


def test_missing_required_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HIVE_DATABASE_URL", raising=False)
    with pytest.raises(SettingsError, match="HIVE_DATABASE_URL is missing"):
        load(NeedsDatabase)


def test_settings_come_from_hive_prefixed_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HIVE_DATABASE_URL", "postgresql://x/y")
    monkeypatch.setenv("HIVE_STATE_DIR", str(tmp_path))
    settings = load(NeedsDatabase)
    assert settings.database_url == "postgresql://x/y"
    assert settings.state_dir == tmp_path


def test_malformed_setting_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HIVE_POOL_SIZE", "lots")
    monkeypatch.setenv("HIVE_DATABASE_URL", "postgresql://x/y")
    with pytest.raises(SettingsError, match="HIVE_POOL_SIZE is invalid"):
        load(NeedsDatabase)
