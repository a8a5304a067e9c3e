"""A test that does not run as a plain pass or fail — skipped, xfail, xpass — fails the session (hivetest's plugin),
with or without the terminal reporter: what a test needs gets installed, not skipped."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

CASES = {
    "skipped": "import pytest\n\ndef test_it():\n    pytest.skip('no tool')\n",
    "xfail": "import pytest\n\n@pytest.mark.xfail(reason='known')\ndef test_it():\n    assert False\n",
    "xpass": "import pytest\n\n@pytest.mark.xfail(reason='known')\ndef test_it():\n    pass\n",
}


@pytest.mark.parametrize("reporter", [[], ["-p", "no:terminal"]], ids=["terminal", "no-terminal"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_a_test_that_did_not_run_fails_the_session(tmp_path: Path, case: str, reporter: list[str]) -> None:
    (tmp_path / "test_case.py").write_text(CASES[case])
    (tmp_path / "test_fine.py").write_text("def test_fine():\n    pass\n")
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *reporter, str(tmp_path)]
    ran = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120)
    assert ran.returncode == pytest.ExitCode.TESTS_FAILED, ran.stdout + ran.stderr
    assert "that is a failure here" in ran.stdout + ran.stderr


def test_a_session_that_ran_everything_passes(tmp_path: Path) -> None:
    (tmp_path / "test_fine.py").write_text("def test_fine():\n    pass\n")
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(tmp_path)]
    ran = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120)
    assert ran.returncode == pytest.ExitCode.OK, ran.stdout + ran.stderr
