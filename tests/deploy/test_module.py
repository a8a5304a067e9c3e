"""deploy/nixos: every .nix file parses, and the host module, evaluated with nixpkgs' real module system against
declared stand-ins of the NixOS options it sets, gives the units, users, database and firewall the hive needs — and
refuses a secret in the store."""

import importlib.util
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hive_spawner.evaluate import NixError
from tests.deploy.units import REPO, evaluate_host

ENABLED = {"services": {"hyperhive": {"enable": True}}, "networking": {"nftables": {"enable": True}}}
HOST_SERVICES = ("broker", "approver", "dashboard")


def with_hive(**options: Any) -> dict[str, Any]:
    return {**ENABLED, "services": {"hyperhive": {"enable": True, **options}}}


@pytest.fixture
def host(tmp_path: Path) -> dict[str, Any]:
    evaluated = evaluate_host(tmp_path, ENABLED)
    assert evaluated["failed"] == []
    return evaluated


def nix_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.nix"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return [REPO / f for f in listed if (REPO / f).exists()]


def test_every_nix_file_of_the_repo_parses() -> None:
    files = nix_files()
    assert {"deploy/nixos/flake.nix", "deploy/nixos/module.nix", "deploy/nixos/container.nix"} <= {
        str(f.relative_to(REPO)) for f in files
    }
    for file in files:
        argv = ["nix-instantiate", "--store", "dummy://", "--parse", str(file)]  # no store: no daemon as a user
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
        assert done.returncode == 0, f"{file}: {done.stderr}"


def test_each_host_service_runs_as_its_own_system_user_and_only_the_spawner_and_setup_as_root(
    host: dict[str, Any],
) -> None:
    services = host["systemd"]["services"]
    assert set(services) == {f"hyperhive-{n}" for n in ("setup", "nats", "spawner", *HOST_SERVICES)}
    for name in ("nats", *HOST_SERVICES):
        user = f"hyperhive-{name}"
        assert services[user]["serviceConfig"]["User"] == user
        assert host["users"]["users"][user] == {"isSystemUser": True, "group": user, "description": f"hyperhive {name}"}
        assert user in host["users"]["groups"]
    assert services["hyperhive-spawner"]["serviceConfig"]["User"] == "root"
    assert "User" not in services["hyperhive-setup"]["serviceConfig"]  # a oneshot as root, before nats-server


def test_units_are_ordered_after_what_they_need_and_restarted_when_they_fail(host: dict[str, Any]) -> None:
    services = host["systemd"]["services"]
    setup, nats = services["hyperhive-setup"], services["hyperhive-nats"]
    assert "hyperhive-nats.service" in setup["before"]
    assert setup["serviceConfig"]["Type"] == "oneshot"
    assert {"hyperhive-setup.service"} <= set(nats["after"]) & set(nats["requires"])
    for name in ("spawner", *HOST_SERVICES):
        unit = services[f"hyperhive-{name}"]
        assert "hyperhive-nats.service" in unit["after"]
        assert "hyperhive-nats.service" in unit["requires"]
        assert unit["serviceConfig"]["Restart"] == "on-failure"
        assert unit["wantedBy"] == ["multi-user.target"]
        assert unit["serviceConfig"]["ExecStart"].endswith(f"/pkgs/hyperhive-env/bin/python -I -m hive_{name}")
    for name in ("approver", "dashboard"):
        unit = services[f"hyperhive-{name}"]
        assert {"postgresql.service", "postgresql-setup.service"} <= set(unit["after"])
        assert unit["environment"]["HIVE_DATABASE_URL"] == "postgresql:///hyperhive?host=/run/postgresql&user=hyperhive"


def test_every_unit_runs_a_module_the_hives_environment_has(host: dict[str, Any]) -> None:
    """The units run `python -I -m <module>` from the package: each module must exist (a console script might not:
    the spawner has none)."""
    ran = []
    for unit in host["systemd"]["services"].values():
        words = unit["serviceConfig"]["ExecStart"].split()
        if words[0].endswith("/bin/python"):
            assert words[1:3] == ["-I", "-m"]
            module = words[3]
            ran.append(module)
            assert importlib.util.find_spec(module if "." in module else f"{module}.__main__"), module
    assert sorted(ran) == sorted(["hive_spawner.nixos_setup", "hive_spawner", *(f"hive_{n}" for n in HOST_SERVICES)])


def test_root_gets_a_hivectl_that_finds_the_hive_by_itself(host: dict[str, Any]) -> None:
    [hivectl] = host["commands"]
    assert hivectl["name"] == "hivectl"
    lines = hivectl["text"].strip().splitlines()
    assert lines[0] == "export HIVE_STATE_DIR=/var/lib/hyperhive"
    assert lines[1].endswith('/pkgs/hyperhive-env/bin/hivectl "$@"')
    setup = host["systemd"]["services"]["hyperhive-setup"]["serviceConfig"]["ExecStart"]
    assert "--state-dir /var/lib/hyperhive --nats-url nats://127.0.0.1:4222" in setup


def test_postgresql_has_the_hives_database_and_role_with_peer_authentication(host: dict[str, Any]) -> None:
    pg = host["services"]["postgresql"]
    assert pg["enable"]
    assert pg["ensureDatabases"] == ["hyperhive"]
    assert pg["ensureUsers"] == [{"name": "hyperhive", "ensureDBOwnership": True}]
    assert pg["authentication"].splitlines() == ["local hyperhive hyperhive peer map=hyperhive"]
    assert pg["identMap"].splitlines() == [
        "hyperhive hyperhive-approver hyperhive",
        "hyperhive hyperhive-dashboard hyperhive",
    ]


def test_nats_runs_our_own_unit_from_the_state_dir_config_with_each_services_seed_a_credential(
    host: dict[str, Any],
) -> None:
    services = host["systemd"]["services"]
    nats = services["hyperhive-nats"]["serviceConfig"]
    assert nats["ExecStart"].endswith("/bin/nats-server -c /var/lib/hyperhive/nats/nats.conf")
    assert nats["ExecReload"].endswith("kill -HUP $MAINPID")
    assert nats["ReadWritePaths"] == ["/var/lib/hyperhive/nats/jetstream"]
    for name in ("spawner", *HOST_SERVICES):
        unit = services[f"hyperhive-{name}"]
        assert unit["serviceConfig"]["LoadCredential"][0] == f"nats.nk:/var/lib/hyperhive/nats/seeds/{name}.nk"
        assert unit["environment"]["HIVE_NATS_CREDS"] == "%d/nats.nk"
    assert "d /var/lib/hyperhive/nats 0750 root hyperhive-nats - -" in host["systemd"]["tmpfiles"]["rules"]


def test_the_spawner_gets_the_nixos_backend_the_lib_the_limits_and_the_pinned_container_flake(
    tmp_path: Path,
) -> None:
    evaluated = evaluate_host(
        tmp_path,
        with_hive(
            agents={"cpuQuota": "150%", "memoryMax": "2G", "nice": 15},
            defaultModel="claude-opus-4-1",
            anthropicCredentialFile="/run/secrets/anthropic",
        ),
    )
    spawner = evaluated["systemd"]["services"]["hyperhive-spawner"]
    env = spawner["environment"]
    assert env["HIVE_BACKEND"] == "nixos"
    assert (env["HIVE_CPU_QUOTA"], env["HIVE_MEMORY_MAX"]) == ("150%", "2G")
    # nice 15: the containers' slice weighs 4 against the services' 100 (the kernel's 1.25 a step of niceness)
    assert evaluated["systemd"]["slices"]["machine"]["sliceConfig"]["CPUWeight"] == 4
    assert env["HIVE_DEFAULT_MODEL"] == "claude-opus-4-1"
    assert env["HIVE_NIX_LIB"] == f"{tmp_path}/nixpkgs/lib"
    assert env["HIVE_NIXOS_FLAKE"] == f"path:{tmp_path}/hyperhive-source?dir=deploy/nixos"
    assert env["HIVE_CREDENTIAL_FILE"] == "%d/anthropic"  # a credential: the file is systemd's to read
    assert "anthropic:/run/secrets/anthropic" in spawner["serviceConfig"]["LoadCredential"]
    assert "/run/secrets/anthropic" not in str(env)
    assert evaluated["nix"]["settings"]["experimental-features"] == ["nix-command", "flakes"]
    tools = {"nixos-container", "systemd", "nix", "git", "util-linux"}  # util-linux: prlimit, around every git
    assert set(spawner["path"]) == {f"{tmp_path}/pkgs/{p}" for p in tools}
    assert env["XDG_CACHE_HOME"] == "/var/cache/hyperhive-spawner"  # nix's caches; root's home is out of reach
    assert spawner["serviceConfig"]["CacheDirectory"] == "hyperhive-spawner"


def test_the_operators_password_is_a_credential_of_the_setup_unit(tmp_path: Path) -> None:
    evaluated = evaluate_host(tmp_path, with_hive(operatorPasswordFile="/run/secrets/operator"))
    setup = evaluated["systemd"]["services"]["hyperhive-setup"]["serviceConfig"]
    assert setup["LoadCredential"] == ["operator-password:/run/secrets/operator"]
    assert setup["ExecStart"].endswith("--operator-password-file %d/operator-password")


@pytest.mark.parametrize("option", ["operatorPasswordFile", "anthropicCredentialFile"])
def test_a_secret_in_the_store_is_refused(tmp_path: Path, option: str) -> None:
    evaluated = evaluate_host(tmp_path, with_hive(**{option: "/nix/store/0000-secret"}))
    assert evaluated["failed"] == [
        f"services.hyperhive.{option} is in the Nix store, which every local user can read; give a path outside it."
    ]


def test_the_module_turns_nftables_on_and_says_why_when_a_host_turns_it_off(tmp_path: Path) -> None:
    evaluated = evaluate_host(tmp_path, {"services": {"hyperhive": {"enable": True}}})
    assert evaluated["networking"]["nftables"]["enable"]
    evaluated = evaluate_host(tmp_path, with_hive() | {"networking": {"nftables": {"enable": False}}})
    assert evaluated["failed"] == [
        "services.hyperhive writes the containers' firewall in nftables: set networking.nftables.enable = true."
    ]


def test_containers_reach_nats_on_the_host_and_beyond_it_only_dns_and_public_https(tmp_path: Path) -> None:
    evaluated = evaluate_host(tmp_path, with_hive(nats={"port": 4333}, agents={"externalInterface": "eth0"}))
    net = evaluated["networking"]
    assert net["firewall"]["extraInputRules"].strip() == (
        'iifname "ve-*" tcp dport 4333 accept comment "hyperhive: agents reach NATS"'
    )
    table = net["nftables"]["tables"]["hyperhive"]
    assert table["family"] == "inet"
    rules = [line.strip() for line in table["content"].splitlines()]
    container_input = rules[rules.index("chain input {") + 2 : rules.index("chain forward {") - 1]
    assert container_input == [
        'iifname "ve-*" ct state established,related accept',
        'iifname "ve-*" tcp dport 4333 accept',
        'iifname "ve-*" drop comment "hyperhive: a container reaches nothing else on the host"',
    ]
    forward = rules[rules.index("chain forward {") + 2 : -1]
    assert forward == [
        'oifname "ve-*" ct state established,related accept',
        'iifname "ve-*" oifname "ve-*" drop comment "hyperhive: no container reaches another"',
        'iifname "ve-*" meta l4proto { tcp, udp } th dport 53 accept comment "hyperhive: DNS"',
        'iifname "ve-*" ip daddr { 10.0.0.0/8, 100.64.0.0/10, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16 } drop '
        'comment "hyperhive: the API is not on a private network"',
        'iifname "ve-*" tcp dport 443 accept comment "hyperhive: the Anthropic API"',
        'iifname "ve-*" drop',
        'oifname "ve-*" drop',
    ]
    assert net["nat"] == {"enable": True, "internalInterfaces": ["ve-+"], "externalInterface": "eth0"}
    assert net["firewall"]["allowedTCPPorts"] == []  # the dashboard stays closed unless asked


def test_the_dashboard_listens_where_it_is_told_and_opens_its_port_only_when_asked(tmp_path: Path) -> None:
    everywhere = "::"  # behind a proxy on another host
    evaluated = evaluate_host(
        tmp_path, with_hive(dashboard={"listenAddress": everywhere, "port": 9000, "openFirewall": True})
    )
    env = evaluated["systemd"]["services"]["hyperhive-dashboard"]["environment"]
    assert (env["HIVE_DASHBOARD_HOST"], env["HIVE_DASHBOARD_PORT"]) == (everywhere, "9000")
    assert evaluated["networking"]["firewall"]["allowedTCPPorts"] == [9000]


@pytest.mark.parametrize(
    ("options", "said"),
    [
        ({"nats": {"prot": 4333}}, "The option `services.hyperhive.nats.prot' does not exist."),
        ({"agents": {"cpuQuota": "lots"}}, "`services.hyperhive.agents.cpuQuota' is not of type `string matching"),
        ({"agents": {"nice": -5}}, "`services.hyperhive.agents.nice' is not of type `integer between 0 and 19"),
        ({"dashboard": {"port": 70000}}, "`services.hyperhive.dashboard.port' is not of type `16 bit unsigned"),
        ({"logLevel": "LOUD"}, '`services.hyperhive.logLevel\' is not of type `one of "DEBUG"'),
    ],
)
def test_a_misspelt_or_mistyped_host_option_is_an_evaluation_error(
    tmp_path: Path, options: dict[str, Any], said: str
) -> None:
    with pytest.raises(NixError) as err:
        evaluate_host(tmp_path, with_hive(**options))
    assert said in err.value.message


def nft_check(ruleset: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """`nft --check` on `ruleset`, in a user and network namespace of its own: the real parser and its validation
    against the kernel's netlink, touching no firewall of this machine (and needing no root)."""
    nft = shutil.which("nft") or shutil.which("nft", path="/usr/sbin:/sbin")
    assert nft, "nft is not installed (Debian: nftables), so the firewall's rules cannot be checked"
    file = tmp_path / "ruleset.nft"
    file.write_text(ruleset)
    return subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", nft, "--check", "-f", str(file)],
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_firewall_rules_are_valid_nftables(tmp_path: Path) -> None:
    net = evaluate_host(tmp_path, with_hive(agents={"externalInterface": "eth0"}))["networking"]
    table = net["nftables"]["tables"]["hyperhive"]
    # NixOS puts extraInputRules in its input-allow chain; a chain of the same kind stands for it.
    ruleset = (
        f"table {table['family']} hyperhive {{\n{table['content']}}}\n"
        f"table inet nixos-fw {{\n  chain input-allow {{\n{net['firewall']['extraInputRules']}  }}\n}}\n"
    )
    done = nft_check(ruleset, tmp_path)
    assert (done.returncode, done.stderr) == (0, "")
    broken = nft_check(ruleset.replace("tcp dport 443", "tcp dprot 443"), tmp_path)
    assert "syntax error" in broken.stderr  # the check can fail
