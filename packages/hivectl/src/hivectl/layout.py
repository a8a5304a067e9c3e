"""Where a local hive keeps its things under the state dir, and how hivectl finds a running hive from there."""

from __future__ import annotations

import importlib.util
import json
import os
from dataclasses import dataclass
from pathlib import Path

from hyperhive.settings import HiveSettings, SettingsError, load
from hyperhive.wire import subjects
from hyperhive.wire.names import OPERATOR


@dataclass(frozen=True)
class Layout:
    state_dir: Path

    @property
    def nats_root(self) -> Path:
        return self.state_dir / "nats"

    @property
    def postgres_data(self) -> Path:
        return self.state_dir / "postgres"

    @property
    def logs(self) -> Path:
        """Every process's output, one file each (`hivectl logs --service <name>`)."""
        return self.state_dir / "logs"

    @property
    def hive_file(self) -> Path:
        """Written by `hivectl up`: where the running hive listens, so other hivectl calls find it."""
        return self.state_dir / "hive.json"

    @property
    def credential(self) -> Path:
        """The hive's Anthropic credential (`hivectl login`), 0600 in a 0700 folder; the spawner hands it out."""
        return self.state_dir / "credentials" / "anthropic"

    def seed(self, principal: str) -> Path:
        return self.nats_root / "seeds" / f"{principal}.nk"


def checkout_claude() -> Path:
    """The claude CLI of this checkout's npm install (`make install`)."""
    return Path(__file__).resolve().parents[4] / "node_modules" / ".bin" / "claude"


def installed_services() -> list[str]:
    """The host services that are installed and runnable (`python -m hive_<name>`), in start order."""
    return [
        name
        for name in subjects.SERVICES
        if importlib.util.find_spec(f"hive_{name}") is not None
        and importlib.util.find_spec(f"hive_{name}.__main__") is not None
    ]


def operator_settings(state_dir: Path | None = None) -> HiveSettings:
    """The operator's connection: `HIVE_NATS_URL`/`HIVE_NATS_CREDS` when set, else the files of the local hive in
    `state_dir` (by default `HIVE_STATE_DIR`'s)."""
    settings = load(HiveSettings)
    if state_dir is not None:
        settings = settings.model_copy(update={"state_dir": state_dir})
    layout = Layout(settings.state_dir)
    updates: dict[str, object] = {}
    if "HIVE_NATS_URL" not in os.environ:
        if not layout.hive_file.exists():
            raise SettingsError(
                f"There is no local hive in {settings.state_dir} (no hive.json): start one with `hivectl up`, "
                "name its --state-dir, or set HIVE_NATS_URL."
            )
        updates["nats_url"] = json.loads(layout.hive_file.read_text())["nats_url"]
    if settings.nats_creds is None and layout.seed(OPERATOR).exists():
        updates["nats_creds"] = layout.seed(OPERATOR)
    return settings.model_copy(update=updates)
