"""What the hive needs from the system is listed once (scripts/system-packages.txt): `make` installs it as root and
names it otherwise, and the test suite stops before any test with the sentence that names what is missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
MISSING = "hive-no-such-tool  hive-nosuchpkg  a tool nobody has\n"


def test_every_listed_tool_is_here() -> None:
    ran = subprocess.run([ROOT / "scripts" / "system-packages"], capture_output=True, text=True, check=False)
    assert (ran.returncode, ran.stderr) == (0, "")


def test_as_a_user_a_missing_package_is_named_with_the_command_that_installs_it(tmp_path: Path) -> None:
    reachable = Path(tempfile.mkdtemp(dir="/var/tmp"))  # a folder the user below can pass (pytest's are 0700)
    reachable.chmod(0o711)
    scripts = reachable / "scripts"
    shutil.copytree(ROOT / "scripts", scripts)
    (scripts / "system-packages.txt").write_text((ROOT / "scripts" / "system-packages.txt").read_text() + MISSING)
    as_user = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if os.geteuid() == 0 else []
    try:
        ran = subprocess.run(
            [*as_user, "bash", scripts / "system-packages"], capture_output=True, text=True, check=False
        )
    finally:
        shutil.rmtree(reachable)
    assert ran.returncode == 1
    assert ran.stderr.splitlines() == [
        "hyperhive needs these system packages: hive-nosuchpkg; install them with: sudo apt-get install hive-nosuchpkg"
    ]


def test_the_suite_stops_before_any_test_naming_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "system-packages.txt").write_text("# command package\ngit git the repos\n" + MISSING)
    (tmp_path / "test_it.py").write_text(f"def test_it():\n    open({str(tmp_path / 'ran')!r}, 'w').close()\n")
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--rootdir", str(tmp_path), str(tmp_path)]
    ran = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120)
    assert ran.returncode == pytest.ExitCode.USAGE_ERROR, ran.stdout + ran.stderr
    assert "hyperhive needs these system packages: hive-nosuchpkg" in ran.stdout + ran.stderr
    assert not (tmp_path / "ran").exists()
