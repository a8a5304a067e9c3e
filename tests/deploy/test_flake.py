"""deploy/nixos/flake.nix, its outputs called with stand-ins for its inputs: the Python environment is built from the
repository's uv.lock by uv2nix, the modules get the package and the pinned container flake from the flake itself,
and the VM test runs the host module."""

import json
from pathlib import Path
from typing import Any

import pytest

from hive_spawner.evaluate import find_nix_lib, run_restricted
from tests.deploy.units import HERE, REPO


@pytest.fixture
def flake(tmp_path: Path) -> dict[str, Any]:
    out = run_restricted(
        "import <tests/flake-outputs.nix>",
        {"hivelib": find_nix_lib(), "repo": REPO, "tests": HERE},
        {"root": str(tmp_path)},
    )
    evaluated: dict[str, Any] = json.loads(out)
    return evaluated


def test_the_python_environment_is_the_repositorys_uv_lock_through_uv2nix(flake: dict[str, Any]) -> None:
    package = flake["package"]
    assert package["name"] == "hyperhive-env"
    assert Path(package["deps"]["lockedFrom"]) == REPO  # the workspace root: where uv.lock is
    assert (REPO / "uv.lock").is_file()
    assert package["overlays"] == {"build-systems": True, "workspace": {"sourcePreference": "wheel"}}
    assert package["python"] == "python312"
    assert flake["systems"] == ["aarch64-linux", "x86_64-linux"]


def test_every_input_is_named_once_and_follows_the_one_nixpkgs(flake: dict[str, Any]) -> None:
    assert flake["inputs"] == {
        "nixpkgs": "github:NixOS/nixpkgs/nixos-25.11",
        "pyproject-nix": "github:pyproject-nix/pyproject.nix",
        "uv2nix": "github:pyproject-nix/uv2nix",
        "pyproject-build-systems": "github:pyproject-nix/build-system-pkgs",
    }
    for name, follows in flake["follows"].items():
        if name != "nixpkgs":
            assert follows["nixpkgs"] == {"follows": "nixpkgs"}, name


def test_the_host_module_takes_the_flakes_package_and_pins_containers_to_the_flakes_store_path(
    flake: dict[str, Any], tmp_path: Path
) -> None:
    assert flake["modules"] == ["container", "default"]
    assert flake["hostPackage"] == f"{tmp_path}/pkgs/hyperhive-env"
    assert flake["containerFlake"] == f"path:{tmp_path}/source?dir=deploy/nixos"


def test_the_vm_test_runs_the_host_module(flake: dict[str, Any]) -> None:
    assert flake["checks"] == ["vm"]
    vm = flake["vm"]
    assert vm["name"] == "hyperhive"
    assert vm["host"]["hyperhive"]["enable"]
    for step in ('host.wait_for_unit(f"{unit}.service")', "nixos-container status manager", "container_crash"):
        assert step in vm["testScript"]
