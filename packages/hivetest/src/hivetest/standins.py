"""Stand-ins for the outside world this machine cannot run, as fixtures: recording `nixos-container`, `systemctl`
and `journalctl` that answer as the real tools do (the real command lines are what is tested), and a recorder of the
exits a backend reports."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest


class Exits:
    """Records the exits a backend reports (from its reader threads)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int | None]] = []
        self.happened = threading.Event()

    def __call__(self, name: str, code: int | None) -> None:
        self.seen.append((name, code))
        self.happened.set()


STANDIN = r"""#!/bin/sh
# Recording stand-in: logs its argv as one JSON line (one write, so concurrent calls never interleave), and keeps
# just enough state to answer as the real tools do: a container exists while its conf file does (what
# `nixos-container list` lists), and its unit's ActiveState is what `nixos-container status` reads.
rec='import json,os,sys; os.write(1, (json.dumps(sys.argv[1:]) + chr(10)).encode())'
python3 -c "$rec" "$(basename "$0")" "$@" >> "$RECORD"
state="$STANDIN_STATE"
case "$(basename "$0") $1" in
  "nixos-container create") printf 'PRIVATE_NETWORK=0\nHOST_ADDRESS=\n' > "$CONF_DIR/$2.conf" ;;
  "nixos-container start") touch "$state/$2.up" ;;
  "nixos-container stop") rm -f "$state/$2.up" ;;
  "nixos-container destroy") rm -f "$state/$2.up" "$CONF_DIR/$2.conf" ;;
  "systemctl show") shift 2; for unit in "$@"; do
      name="${unit#container@}"; name="${name%.service}"
      [ -n "$apart" ] && echo; apart=1
      echo "Id=$unit"; if [ -e "$state/$name.up" ]; then echo ActiveState=active; else echo ActiveState=inactive; fi
    done ;;
  "journalctl -M") echo "harness line 1"; echo "harness line 2" ;;
  "journalctl -f") exec tail -n +1 -f "$JOURNAL" ;;
esac
exit 0
"""


@pytest.fixture
def standins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir, state, conf = tmp_path / "bin", tmp_path / "standin", tmp_path / "conf"
    for d in (bin_dir, state, conf):
        d.mkdir()
    for tool in ("nixos-container", "systemctl", "journalctl"):
        script = bin_dir / tool
        script.write_text(STANDIN)
        script.chmod(script.stat().st_mode | stat.S_IEXEC)
    record = tmp_path / "record.jsonl"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("RECORD", str(record))
    monkeypatch.setenv("STANDIN_STATE", str(state))
    monkeypatch.setenv("CONF_DIR", str(conf))
    (tmp_path / "journal").touch()
    monkeypatch.setenv("JOURNAL", str(tmp_path / "journal"))
    return record


def calls(record: Path) -> list[list[str]]:
    """The recorded command lines, but the crash watcher's (it starts in the background, at its own pace)."""
    complete = record.read_text().split("\n")[:-1] if record.exists() else []  # a line still being written waits
    return [c for c in map(json.loads, complete) if c[:2] != ["journalctl", "-f"]]


@pytest.fixture
def exits() -> Exits:
    return Exits()
