"""The host module's units, written out as unit files, pass this machine's `systemd-analyze verify` (unknown keys,
missing programs, missing units) and stay under an exposure threshold of their own in `systemd-analyze security
--offline=true`."""

import re
import subprocess
from pathlib import Path

import pytest

from tests.deploy.units import evaluate_host, write_units

# The highest exposure (systemd-analyze's level, 0-10) each unit may reach. Every host service is a Python program
# (or nats-server) that talks to NATS and PostgreSQL over sockets as its own user: the nixpkgs hardening gets it to
# ~1.2; what remains is the network, which it needs.
THRESHOLDS = {
    "hyperhive-nats": 1.5,
    "hyperhive-broker": 1.5,
    "hyperhive-approver": 1.5,
    "hyperhive-dashboard": 1.5,
    # Root, to write root's seeds and chown the dashboard's password file; no network at all.
    "hyperhive-setup": 2.0,
    # The reasoned exception: nixos-container writes /etc/nixos-containers, /nix/var/nix/{profiles,gcroots}/
    # per-container and /var/lib/nixos-containers, asks systemd (D-Bus) to start and limit container@<name>
    # units, and chowns each agent's state dir to the agent's uid range — so root, with the capabilities that
    # needs (CAP_CHOWN, CAP_DAC_*, CAP_FOWNER, CAP_KILL, CAP_LINUX_IMMUTABLE), no user namespace and writable
    # control groups. Everything else is as tight as the other units; it may not drift above this.
    "hyperhive-spawner": 3.0,
}
# Units the module orders itself against that NixOS provides; stand-ins, so verify finds them on any machine.
PROVIDED = ("postgresql.service", "postgresql-setup.service", "nix-daemon.socket")


@pytest.fixture
def units(tmp_path: Path) -> dict[str, Path]:
    evaluated = evaluate_host(
        tmp_path,
        {
            "services": {
                "hyperhive": {
                    "enable": True,
                    "operatorPasswordFile": "/run/secrets/operator",
                    "anthropicCredentialFile": "/run/secrets/anthropic",
                    "defaultModel": "claude-opus-4-1",
                }
            },
        },
    )
    assert evaluated["failed"] == []
    files = write_units(evaluated, tmp_path / "units")
    for provided in PROVIDED:
        kind = provided.rpartition(".")[2].capitalize()
        body = "ExecStart=/bin/true" if kind == "Service" else "ListenStream=/run/nix-daemon.sock"
        (tmp_path / "units" / provided).write_text(f"[Unit]\nDescription=NixOS's {provided}\n[{kind}]\n{body}\n")
    return files


def test_every_unit_passes_systemd_analyze_verify(units: dict[str, Path]) -> None:
    assert set(units) == set(THRESHOLDS)
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *map(str, units.values())],
        capture_output=True,
        text=True,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_verify_would_catch_a_misspelt_directive(units: dict[str, Path]) -> None:
    """The check above can fail: a unit with a typo does not pass it."""
    broker = units["hyperhive-broker"]
    broker.write_text(broker.read_text().replace("ProtectSystem=", "ProtectSytem="))
    argv = ["systemd-analyze", "verify", "--man=no", str(broker)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert "Unknown key 'ProtectSytem'" in done.stderr


@pytest.mark.parametrize("name", sorted(THRESHOLDS))
def test_each_unit_stays_under_its_exposure_threshold(units: dict[str, Path], name: str) -> None:
    done = subprocess.run(
        ["systemd-analyze", "security", "--offline=true", "--no-pager", str(units[name])],
        capture_output=True,
        text=True,
        check=False,
    )
    level = re.search(r"Overall exposure level for \S+: (\d+\.\d)", done.stdout)
    assert level, done.stdout + done.stderr
    print(f"{name}: exposure {level.group(1)} (threshold {THRESHOLDS[name]})")
    assert float(level.group(1)) <= THRESHOLDS[name]
