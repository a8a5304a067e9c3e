"""Configuration from the environment (`HIVE_` prefix), with defaults that work for `hivectl up`."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path
from typing import Any, ClassVar, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


def default_state_dir() -> Path:
    """Root keeps the hive in /var/lib: agents run as their own uids and must reach their state dirs, which they
    cannot under /root (mode 0700). Anyone else keeps it in their home; their agents run as themselves."""
    if os.geteuid() == 0:
        return Path("/var/lib/hyperhive")
    return Path.home() / ".local" / "share" / "hyperhive"


class SettingsError(Exception):
    """A setting is missing or malformed; the message names it by its environment variable."""


class HiveSettings(BaseModel):
    """What every hive process needs: where NATS is and who it is there.

    A field not given comes from the environment variable `HIVE_<FIELD>`, then from its default; a list, dict or
    model is JSON there. This is what pydantic-settings did, whose import alone held 2.5 MiB in each of a hundred
    harnesses."""

    model_config = ConfigDict(extra="ignore")
    ENV_PREFIX: ClassVar[str] = "HIVE_"

    nats_url: str = Field("nats://127.0.0.1:4222", description="Where the hive's nats-server listens.")
    nats_creds: Path | None = Field(
        None, description="This process's NATS nkey seed file (mode 0600); none on an open server."
    )
    state_dir: Path = Field(default_factory=default_state_dir, description="Root of the hive's host state.")
    log_level: str = Field("INFO", description="Python logging level for this process.")

    @model_validator(mode="before")
    @classmethod
    def _environment(cls, given: Any) -> Any:
        if not isinstance(given, dict):
            return given
        values = dict(given)
        for name, field in cls.model_fields.items():
            var = cls.ENV_PREFIX + name.upper()
            if name not in values and var in os.environ:
                values[name] = _decoded(var, os.environ[var], field.annotation)
        return values


def _decoded(var: str, raw: str, annotation: Any) -> Any:
    if not _structured(annotation):
        return raw
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise SettingsError(f"Setting {var} is invalid: it must be JSON ({exc}).") from None


def _structured(annotation: Any) -> bool:
    """Whether a field's type is a list, dict, set, tuple or model (or an optional one), which a variable holds as
    JSON."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        return any(_structured(arg) for arg in get_args(annotation) if arg is not type(None))
    kind = origin or annotation
    return isinstance(kind, type) and issubclass(kind, list | dict | set | frozenset | tuple | BaseModel)


S = TypeVar("S", bound=HiveSettings)


def load(cls: type[S]) -> S:
    """Read settings, turning pydantic's report into one sentence per bad variable."""
    try:
        return cls()
    except ValidationError as exc:
        prefix = cls.ENV_PREFIX
        problems = []
        for error in exc.errors():
            var = prefix + "_".join(str(part) for part in error["loc"]).upper()
            if error["type"] == "missing":
                problems.append(f"Setting {var} is missing, and has no default.")
            else:
                problems.append(f"Setting {var} is invalid: {error['msg']}.")
        raise SettingsError(" ".join(problems)) from None
