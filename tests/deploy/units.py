"""The host module's systemd units written out as unit files, as NixOS writes them (nixos/lib/systemd-lib.nix: a
list becomes one line per item, a bool `true`/`false`, `environment` `Environment=` lines, `path` the unit's PATH),
so that this machine's systemd-analyze can check them. NixOS adds its own defaults to every unit (a PATH of
coreutils and friends, `X-RestartIfChanged`); what the checks here see is what the module writes."""

from __future__ import annotations

import json
import shlex
import stat
from pathlib import Path
from typing import Any

from hive_spawner.evaluate import find_nix_lib, run_restricted

REPO = Path(__file__).resolve().parents[2]
HERE = Path(__file__).parent


def evaluate_host(root: Path, settings: dict[str, Any]) -> dict[str, Any]:
    """deploy/nixos/module.nix evaluated against the stand-ins with `settings`; `failed` lists failed assertions."""
    out = run_restricted(
        "import <tests/host.nix>",
        {"hivelib": find_nix_lib(), "repo": REPO, "tests": HERE},
        {"root": str(root), "settings": json.dumps(settings)},
    )
    evaluated: dict[str, Any] = json.loads(out)
    return evaluated


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _lines(key: str, value: Any) -> list[str]:
    values = value if isinstance(value, list) else [value]
    return [f"{key}={_value(v)}" for v in values]


def unit_file(unit: dict[str, Any]) -> str:
    lines = ["[Unit]", f"Description={unit['description']}"]
    for key in ("after", "before", "requires", "wants"):
        if unit[key]:
            lines.append(f"{key.capitalize()}={' '.join(unit[key])}")
    for key, value in unit["unitConfig"].items():
        lines += _lines(key, value)
    lines.append("[Service]")
    environment = dict(unit["environment"])
    if unit["path"]:
        environment["PATH"] = ":".join(f"{p}/bin" for p in unit["path"])
    for key, value in sorted(environment.items()):
        escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'Environment="{key}={escaped}"')
    for key, value in unit["serviceConfig"].items():
        lines += _lines(key, value)
    if unit["wantedBy"]:
        lines += ["[Install]", f"WantedBy={' '.join(unit['wantedBy'])}"]
    return "\n".join(lines) + "\n"


def executables(unit: dict[str, Any]) -> list[str]:
    """The programs a unit's Exec lines run (the first word, without systemd's prefixes)."""
    found = []
    for key, value in unit["serviceConfig"].items():
        if key.startswith("Exec"):
            for line in value if isinstance(value, list) else [value]:
                found.append(shlex.split(line)[0].lstrip("-@:+!"))
    return found


def write_units(evaluated: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Every unit of the module as a file in `folder`, and a stand-in executable for each program it runs (they
    are store paths on NixOS; systemd-analyze verify checks that they exist and are executable)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, unit in evaluated["systemd"]["services"].items():
        path = folder / f"{name}.service"
        path.write_text(unit_file(unit))
        files[name] = path
        for program in executables(unit):
            exe = Path(program)
            exe.parent.mkdir(parents=True, exist_ok=True)
            exe.write_text("#!/bin/sh\n")
            exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return files
