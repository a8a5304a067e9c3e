"""The attack suite: each test plays a prompt-injected agent (or manager, or a local user) against a real hive, with
real credentials, and counts its attempts. Every test ends with `attacks.none_succeeded()`, which prints
`<test>: N attacks, 0 succeeded` and fails naming each attack that got through; the session prints the total."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

_TOTALS = {"tried": 0, "succeeded": 0}


@dataclass
class Attacks:
    """What one test tried, and what got through."""

    test: str
    tried: list[str] = field(default_factory=list)
    succeeded: list[str] = field(default_factory=list)

    def record(self, what: str, *, succeeded: bool) -> None:
        """One attempt: `succeeded` says whether the attacker got what it wanted."""
        self.tried.append(what)
        if succeeded:
            self.succeeded.append(what)

    def none_succeeded(self) -> None:
        print(f"{self.test}: {len(self.tried)} attacks, {len(self.succeeded)} succeeded")
        _TOTALS["tried"] += len(self.tried)
        _TOTALS["succeeded"] += len(self.succeeded)
        assert self.tried, "an attack test that tried nothing proves nothing"
        assert not self.succeeded, "these attacks succeeded:\n" + "\n".join(self.succeeded)


@pytest.fixture
def attacks(request: pytest.FixtureRequest) -> Attacks:
    return Attacks(request.node.name)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if _TOTALS["tried"]:
        terminalreporter.write_line(f"security: {_TOTALS['tried']} attacks, {_TOTALS['succeeded']} succeeded")
