"""A spawn through the real services with the nixos backend (recording stand-ins for nixos-container, systemctl and
journalctl): the container's credentials hold the NATS seed the spawner minted and the server admits, and the
container's start script, run for real with those credentials, connects to the real nats-server as the agent."""

import asyncio
import shutil
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from nats.aio.client import Client

from hive_approver.__main__ import start as start_approver
from hive_spawner.__main__ import start as start_spawner
from hive_spawner.nixos import ENV_CREDENTIAL, NATS_CREDENTIAL, NixosBackend
from hivectl.natsserver import NatsServer
from hivetest.agents import make_agent, operator_call
from hivetest.hive import TestHive
from hivetest.services import approver_settings, spawner_settings
from hyperhive.identity import public_key
from hyperhive.wire import subjects
from hyperhive.wire.models import Approval, DecisionRequest
from tests.deploy.test_container import start_script

HIVE_FLAKE = "path:/nix/store/00000000000000000000000000000000-source?dir=deploy/nixos"
# What the harness's first moments need of NATS, as the agent: connect with its seed, and publish on its plane.
CONNECT = """
import asyncio, os, sys, nats
async def main():
    nc = await nats.connect(os.environ["HIVE_NATS_URL"], nkeys_seed=os.environ["HIVE_NATS_CREDS"],
                            allow_reconnect=False, max_reconnect_attempts=0)
    await nc.publish("hive.agent.bob.heartbeat", b"{}")
    await nc.flush()
    await nc.close()
    open(sys.argv[1], "w").write(os.environ["HIVE_NATS_URL"])
asyncio.run(main())
"""


async def test_a_spawned_containers_credentials_let_its_start_script_reach_nats_as_the_agent(
    hive: TestHive,
    database_url: str,
    operator_nc: Client,
    spawner_state: Path,
    standins: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert isinstance(hive.server, NatsServer)
    monkeypatch.setenv("HIVE_NIXOS_FLAKE", HIVE_FLAKE)  # what the NixOS module sets
    settings = spawner_settings(hive, spawner_state).model_copy(
        update={"backend": "nixos", "containers_dir": tmp_path / "containers", "nixos_conf_dir": tmp_path / "conf"}
    )
    async with AsyncExitStack() as stack:
        spawner = await start_spawner(stack, settings)
        approver = await start_approver(stack, approver_settings(hive, database_url))
        manager = await make_agent(hive, approver, "manager")
        started = await (await hive.connect("dashboard")).subscribe(f"{subjects.EVENTS_PREFIX}.agent_started.bob")
        pending = await manager.request("spawn", agent="bob", description="a helper")
        await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
        await started.next_msg(timeout=30)
        backend = spawner.backend
        assert isinstance(backend, NixosBackend)

        seed = backend.credential("bob", NATS_CREDENTIAL).read_text()
        assert seed == (backend.state_dir("bob") / "nats.nk").read_text().strip()
        assert (hive.server.root / "agents" / "bob.pub").read_text().strip() == public_key(
            backend.credential("bob", NATS_CREDENTIAL)
        )
        conf = (tmp_path / "conf" / "bob.conf").read_text()
        assert f"--load-credential=nats.nk:{backend.credential('bob', NATS_CREDENTIAL)}" in conf
        assert HIVE_FLAKE in (tmp_path / "containers" / "bob" / "flake.nix").read_text()

        # The container's start script with what nspawn would hand it, and `ip` saying the host is the gateway.
        (tmp_path / "container").mkdir()
        script, seen = start_script(tmp_path / "container", "default via 127.0.0.1 dev eth0")
        python = tmp_path / "container" / "pkgs" / "hyperhive-env" / "bin" / "python"
        (tmp_path / "connect.py").write_text(CONNECT)
        python.write_text(f"#!/bin/sh\nexec {sys.executable} {tmp_path / 'connect.py'} {seen}\n")
        credentials = tmp_path / "credentials"
        credentials.mkdir()
        for which in (ENV_CREDENTIAL, NATS_CREDENTIAL):
            shutil.copy(backend.credential("bob", which), credentials / which)
        env = {"CREDENTIALS_DIRECTORY": str(credentials), "PATH": "/usr/bin:/bin"}
        # In a thread: the services of this test answer on the loop meanwhile.
        await asyncio.to_thread(subprocess.run, ["bash", str(script)], env=env, check=True, timeout=60)
        port = hive.server.port
        assert seen.read_text() == f"nats://127.0.0.1:{port}"  # the spawner's port, at the gateway
