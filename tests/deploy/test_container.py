"""Each agent's container (deploy/nixos/container.nix), evaluated with the real module system against stand-ins of
the NixOS options it sets: the same agent options as the spawner's evaluation, the harness of its own closure as a
systemd unit with its secrets as credentials, packages by name, claude-code the one unfree package — and the start
script, run for real, hands the harness exactly the environment the spawner wrote."""

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hive_harness.bash_policy import FIXED_PATH
from hive_spawner.evaluate import NIX_DIR, NixError, evaluate, find_nix_lib, run_restricted
from hive_spawner.nixos import ENV_CREDENTIAL, NATS_CREDENTIAL, NixosBackend
from hive_spawner.repos import ConfigRepos
from tests.deploy.units import HERE, REPO, unit_file

TEMPLATE = (NIX_DIR.parent / "template" / "agent.nix").read_text()
SEED = "SU" + "A" * 56


def evaluate_container(root: Path, agent_nix: str) -> dict[str, Any]:
    agent = root / "agent"
    agent.mkdir(exist_ok=True)
    (agent / "agent.nix").write_text(agent_nix)
    roots = {"hivelib": find_nix_lib(), "repo": REPO, "tests": HERE, "agent": agent}
    evaluated: dict[str, Any] = json.loads(run_restricted("import <tests/container.nix>", roots, {"root": str(root)}))
    return evaluated


def test_the_container_and_the_spawner_read_the_same_agent_options(tmp_path: Path) -> None:
    agent_nix = '{ hyperhive.allowedBash.deny = [ "git push" ]; hyperhive.packages = [ "git" ]; }\n'
    container = evaluate_container(tmp_path, agent_nix)
    policy = evaluate(tmp_path / "agent", "alice")
    assert container["hyperhive"] == {
        **policy.model_dump(by_alias=True, exclude={"kind", "agent"}),
        "packages": ["git"],
    }


def test_the_harness_is_a_unit_of_the_containers_closure_with_its_secrets_as_credentials(tmp_path: Path) -> None:
    container = evaluate_container(tmp_path, TEMPLATE)
    assert container["boot"]["isContainer"]
    unit = container["systemd"]["services"]["hyperhive-harness"]
    config = unit["serviceConfig"]
    assert config["ExecStart"] == f"{tmp_path}/scripts/hyperhive-harness-start"
    assert f"exec {tmp_path}/pkgs/hyperhive-env/bin/python -I -m hive_harness" in container["start"]
    assert config["LoadCredential"] == [ENV_CREDENTIAL, NATS_CREDENTIAL]  # from nspawn, never a file a flake reads
    assert "EnvironmentFile" not in config
    assert (config["WorkingDirectory"], config["Restart"]) == ("/state", "on-failure")
    assert f"{tmp_path}/pkgs/claude-code" in unit["path"]
    assert container["unfree"] == [True, False]  # claude-code, and nothing else


def test_packages_named_in_agent_nix_are_on_the_system_and_the_harness_path(tmp_path: Path) -> None:
    container = evaluate_container(tmp_path, '{ hyperhive.packages = [ "ripgrep" "python3Packages.pytest" ]; }\n')
    assert container["packages"] == ["bash", "coreutils", "git", "ripgrep", "pytest"]
    assert {f"{tmp_path}/pkgs/ripgrep", f"{tmp_path}/pkgs/pytest"} <= set(
        container["systemd"]["services"]["hyperhive-harness"]["path"]
    )


@pytest.mark.parametrize(
    ("agent_nix", "said"),
    [
        ('{ hyperhive.packages = [ "nosuch" ]; }', "hyperhive.packages: nixpkgs has no package `nosuch'"),
        ('{ hyperhive.modle = "x"; }', "The option `hyperhive.modle' does not exist."),
    ],
)
def test_what_the_container_cannot_build_is_an_error_naming_it(tmp_path: Path, agent_nix: str, said: str) -> None:
    with pytest.raises(NixError) as err:
        evaluate_container(tmp_path, agent_nix + "\n")
    assert said in err.value.message


def test_the_harness_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    container = evaluate_container(tmp_path, TEMPLATE)
    script = tmp_path / "scripts" / "hyperhive-harness-start"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n" + container["start"])
    script.chmod(0o755)
    unit = tmp_path / "hyperhive-harness.service"
    unit.write_text(unit_file(container["systemd"]["services"]["hyperhive-harness"]))
    argv = ["systemd-analyze", "verify", "--man=no", str(unit)]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert (done.returncode, done.stderr) == (0, "")


def start_script(tmp_path: Path, route: str) -> tuple[Path, Path]:
    """The start script as the container runs it, its programs stand-ins: `ip` prints `route`, `python` writes the
    environment it was started with (and its arguments) to a file."""
    container = evaluate_container(tmp_path, TEMPLATE)
    pkgs = tmp_path / "pkgs"
    for name, body in {
        "iproute2/bin/ip": f"echo '{route}'",
        "hyperhive-env/bin/python": f'exec python3 -c "import json,os,sys; json.dump({{\\"argv\\": sys.argv[1:], '
        f'\\"env\\": dict(os.environ)}}, open(\\"{tmp_path}/seen.json\\", \\"w\\"))" "$@"',
    }.items():
        program = pkgs / name
        program.parent.mkdir(parents=True)
        program.write_text(f"#!/bin/sh\n{body}\n")
        program.chmod(0o755)
    (pkgs / "gawk" / "bin").mkdir(parents=True)
    (pkgs / "gawk" / "bin" / "awk").symlink_to(shutil.which("awk") or "/usr/bin/awk")
    script = tmp_path / "start.sh"
    script.write_text(container["start"])
    return script, tmp_path / "seen.json"


def credentials(tmp_path: Path, env: dict[str, str], seed: str | None) -> Path:
    """What the spawner hands a container, through its own code, in a folder as systemd presents credentials."""
    backend = NixosBackend(tmp_path / "agents", ConfigRepos(tmp_path / "config"), containers_root=tmp_path / "c")
    if seed is not None:
        backend.prepare("alice")
        (backend.state_dir("alice") / NATS_CREDENTIAL).write_text(seed + "\n")
    backend.hand_over("alice", env)
    folder = tmp_path / "credentials"
    folder.mkdir()
    for which in (ENV_CREDENTIAL, NATS_CREDENTIAL):
        shutil.copy(backend.credential("alice", which), folder / which)
    return folder


def test_the_start_script_gives_the_harness_exactly_the_spawners_environment_and_the_hosts_nats(
    tmp_path: Path,
) -> None:
    script, seen = start_script(tmp_path, "default via 10.233.4.1 dev eth0 proto static")
    env = {
        "HIVE_NATS_URL": "nats://127.0.0.1:4222",
        "HIVE_NATS_CREDS": "/state/nats.nk",
        "ANTHROPIC_API_KEY": "sk-ant-not-a-real-one",
        "QUOTED": 'a "b" $c `d` \\e $(touch /tmp/pwned) ; exit 3',
    }
    folder = credentials(tmp_path, env, SEED)
    subprocess.run(
        ["bash", str(script)], env={"CREDENTIALS_DIRECTORY": str(folder), "PATH": os.environ["PATH"]}, check=True
    )
    got = json.loads(seen.read_text())
    assert got["argv"] == ["-I", "-m", "hive_harness"]
    assert got["env"]["QUOTED"] == env["QUOTED"]  # sourced, not run
    assert got["env"]["ANTHROPIC_API_KEY"] == env["ANTHROPIC_API_KEY"]
    assert got["env"]["HIVE_NATS_URL"] == "nats://10.233.4.1:4222"  # the host side of the veth, the spawner's port
    assert got["env"]["HIVE_NATS_CREDS"] == f"{folder}/nats.nk"
    assert (folder / NATS_CREDENTIAL).read_text() == SEED


def test_without_a_seed_the_credential_is_empty_and_the_harness_keeps_the_spawners_setting(tmp_path: Path) -> None:
    script, seen = start_script(tmp_path, "default via 10.233.9.1 dev eth0")
    folder = credentials(tmp_path, {"HIVE_NATS_URL": "nats://127.0.0.1:4999"}, "not a seed")
    assert (folder / NATS_CREDENTIAL).read_text() == ""  # what the agent planted is not handed on
    subprocess.run(
        ["bash", str(script)], env={"CREDENTIALS_DIRECTORY": str(folder), "PATH": os.environ["PATH"]}, check=True
    )
    got = json.loads(seen.read_text())["env"]
    assert got["HIVE_NATS_URL"] == "nats://10.233.9.1:4999"
    assert "HIVE_NATS_CREDS" not in got


def test_without_a_route_to_the_host_the_harness_does_not_start(tmp_path: Path) -> None:
    script, seen = start_script(tmp_path, "")
    folder = credentials(tmp_path, {"HIVE_NATS_URL": "nats://127.0.0.1:4222"}, None)
    done = subprocess.run(
        ["bash", str(script)],
        env={"CREDENTIALS_DIRECTORY": str(folder), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "no default route to the host" in done.stderr
    assert not seen.exists()


def test_the_programs_the_bash_checker_may_allow_are_on_its_fixed_path_in_the_container(tmp_path: Path) -> None:
    """The checker and the CLI's Bash look only on /usr/bin:/bin; in the container /usr/bin is the system profile,
    which holds the agent's packages (and nothing writes into it: usrbinenv's activation is off)."""
    container = evaluate_container(tmp_path, '{ hyperhive.packages = [ "ripgrep" ]; }\n')
    assert "/usr/bin" in FIXED_PATH
    assert "L+ /usr/bin - - - - /run/current-system/sw/bin" in container["tmpfiles"]
    assert container["usrbinenv"] is None
    assert "ripgrep" in container["packages"]
