"""The NATS server's permissions are the security boundary: these run against a real nats-server with our auth."""

import asyncio
import functools
import os
import stat
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import nats
import nats.errors
import pytest

from hivectl.natsserver import NatsServer
from hivetest.agents import Agent, Agents
from hivetest.hive import TestHive
from hyperhive import bus, events
from hyperhive.identity import Reloads, mint_seed
from hyperhive.process import SERVICE_READY, Child, free_port
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects


@pytest.fixture
async def authed(nats_server: NatsServer, tmp_path: Path):
    async with TestHive(nats_server, tmp_path) as hive:
        yield hive


class Errors:
    """Collects the async -ERR lines the server sends a client."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.arrived = asyncio.Event()

    async def record(self, exc: Exception) -> None:
        self.seen.append(str(exc))
        self.arrived.set()

    async def first(self) -> str:
        await asyncio.wait_for(self.arrived.wait(), 5)
        return self.seen[0]


async def test_agent_seed_is_a_0600_file(authed: TestHive) -> None:
    seed = authed.add_agent("alice")
    assert stat.S_IMODE(seed.stat().st_mode) == 0o600


async def alice_publishes(
    authed: TestHive, watch: str, forged: str, allowed: str, watcher_principal: str = "dashboard"
) -> tuple[str, str]:
    """alice publishes `forged` then `allowed`: the server's error, and the first subject a watcher of `watch` got."""
    authed.add_agent("alice")
    authed.add_agent("bob")
    watcher = await authed.connect(watcher_principal)
    seen = await watcher.subscribe(watch)
    await watcher.flush()
    errors = Errors()
    alice = await authed.connect("alice", error_cb=errors.record)
    await alice.publish(forged, b'{"to":"carol","body":"I am bob"}')
    await alice.publish(allowed, b"marker")
    await alice.flush()
    return await errors.first(), (await seen.next_msg(timeout=5)).subject


async def test_agent_cannot_publish_under_another_agents_prefix(authed: TestHive) -> None:
    error, first = await alice_publishes(authed, "hive.agent.>", "hive.agent.bob.send", "hive.agent.alice.send")
    assert "permissions violation" in error.lower()
    assert first == "hive.agent.alice.send"  # the forged one never arrived before the marker


@pytest.mark.parametrize(
    "subject",
    [
        "hive.agent.bob.>",
        "hive.harness.bob.pty",
        "hive.broker.send",
        "_INBOX.>",
        "hive.events.>",
        "$SRV.PING",
        ">",
    ],
)
async def test_agent_cannot_subscribe_outside_its_own_subjects(authed: TestHive, subject: str) -> None:
    authed.add_agent("alice")
    errors = Errors()
    alice = await authed.connect("alice", error_cb=errors.record)
    await alice.subscribe(subject)
    await alice.flush()
    assert "permissions violation for subscription" in (await errors.first()).lower()


async def test_agent_can_use_its_own_plane_and_reply_inbox(authed: TestHive) -> None:
    authed.add_agent("alice")
    broker = await authed.connect("broker")

    async def echo(msg: nats.aio.msg.Msg) -> None:
        await msg.respond(b"echo:" + msg.data)

    await broker.subscribe("hive.agent.*.send", cb=echo)
    await broker.flush()
    alice = await authed.connect("alice")
    reply = await alice.request("hive.agent.alice.send", b"hi", timeout=5)
    assert reply.data == b"echo:hi"


async def test_services_and_operator_cannot_speak_as_an_agent(authed: TestHive) -> None:
    for principal in ("broker", "operator"):
        errors = Errors()
        nc = await authed.connect(principal, error_cb=errors.record)
        await nc.publish("hive.agent.alice.send", b"forged")
        await nc.flush()
        assert "permissions violation for publish" in (await errors.first()).lower()


async def test_removed_agent_is_disconnected_and_cannot_connect_again(authed: TestHive) -> None:
    authed.add_agent("alice")
    settings = authed.settings("alice")
    closed = asyncio.Event()

    async def on_closed() -> None:
        closed.set()

    alice = await authed.connect("alice", allow_reconnect=False, closed_cb=on_closed, error_cb=Errors().record)
    assert alice.is_connected

    authed.remove_agent("alice")
    await asyncio.wait_for(closed.wait(), 10)
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await bus.connect(settings, name="alice", allow_reconnect=False, error_cb=Errors().record)


async def test_unknown_credential_is_refused(authed: TestHive, tmp_path: Path) -> None:
    stranger = tmp_path / "stranger.nk"
    mint_seed(stranger)
    settings = HiveSettings(nats_url=authed.url, nats_creds=stranger)
    with pytest.raises(Exception, match=r"(?i)authorization"):
        await bus.connect(settings, name="stranger", allow_reconnect=False, error_cb=Errors().record)


@pytest.mark.parametrize(
    "subject", ["hive.harness.bob.waiting", "hive.harness.alice.cancel", "hive.harness.alice.pty.open"]
)
async def test_agent_publishes_on_the_harness_plane_only_its_own_waiting_notice(authed: TestHive, subject: str) -> None:
    """Its PreToolUse hook may tell its own harness it waits; it may not drive any harness, its own included. (The
    notice stays in alice's own account: her harness, another connection of hers, is the one that hears it.)"""
    error, first = await alice_publishes(
        authed, "hive.harness.alice.>", subject, "hive.harness.alice.waiting", watcher_principal="alice"
    )
    assert "permissions violation" in error.lower()
    assert first == "hive.harness.alice.waiting"


async def test_agents_admitted_at_once_share_reloads_and_each_is_reachable(authed: TestHive) -> None:
    """Twenty admissions, each waiting for a reload that began after its change: two reloads serve them all (each
    reload closes the connections of every account it changes), and every agent's credential is accepted."""
    identities = authed.server.identities
    reloads = Reloads(identities, authed.url)
    done: list[int] = []
    real = identities.reload

    async def counted(url: str) -> None:
        done.append(1)
        await real(url)

    identities.reload = counted  # type: ignore[method-assign]
    names = [f"r{i}" for i in range(20)]
    for name in names:
        seed = authed.tmp_path / "agents" / name / "nats.nk"
        identities.add_agent(name, seed)
        authed.agent_seeds[name] = seed
    await asyncio.gather(*(reloads.after_change() for _ in names))
    assert len(done) == 2
    for name in names:  # each credential is accepted: every change was in a reload
        assert (await authed.connect(name)).is_connected


async def while_admitting(
    hive: TestHive, admissions: int, *steps: Callable[[], Awaitable[object]]
) -> tuple[int, list[str]]:
    """Run each of `steps` over and over, side by side, while `admissions` agents are admitted, one real reload
    each; how many runs succeeded, and how each that failed did."""
    succeeded, failed, admitting = 0, [], True

    async def repeat(step: Callable[[], Awaitable[object]]) -> None:
        nonlocal succeeded
        while admitting:
            try:
                await step()
                succeeded += 1
            except Exception as exc:  # what failed is the finding
                failed.append(repr(exc))

    running = [asyncio.create_task(repeat(step)) for step in steps]
    try:
        for i in range(admissions):
            hive.server.identities.add_agent(f"w{i}", hive.tmp_path / "agents" / f"w{i}" / "nats.nk")
            await hive.server.identities.reload(hive.url)
    finally:
        admitting = False
        await asyncio.gather(*running)
    return succeeded, failed


async def test_a_services_jetstream_requests_ride_out_the_reloads_that_admit_agents(authed: TestHive) -> None:
    """Each reload that adds an agent changes the hive's account, and JetStream's API has no responders for a
    moment while the server re-wires it. A service asking JetStream meanwhile (the broker's inbox depths, a spawner's
    KV writes) is answered, not told to try again."""
    broker = (await authed.connect("broker")).jetstream()
    answered, failed = await while_admitting(authed, 30, *[lambda: broker.consumers_info(subjects.INBOX_STREAM)] * 4)
    assert failed == []
    assert answered > 30  # the askers asked throughout


async def test_an_agents_pulls_and_stored_figures_ride_out_the_reloads_that_admit_others(
    hive: TestHive, agents: Agents
) -> None:
    """The same moments reach into every agent's account: its inbox consumer and HIVE_STATS's capture of its
    figures are service imports the server re-wires. A pull then found nobody and the harness backed off for 5 s
    saying the hive was unreachable; a turn's figures, published plainly, were dropped without a word (seen in a
    100-agent storm: one agent's wake-up turn never reached the stats). Now every pull is answered and every
    figure is stored."""
    pulling = [await agents.agent(name, ["manager"]) for name in ("alice", "bob", "carol")]
    for agent in pulling:
        await agent.recv()  # its inbox is open

    async def turn(agent: Agent) -> None:  # what a harness does around a turn: pull, then store the figures
        await agent.inbox.take(wait=0)
        await events.store(agent.nc, subjects.agent(agent.name, subjects.STATS), b"{}", "turn's figures")

    stored, failed = await while_admitting(hive, 60, *[functools.partial(turn, agent) for agent in pulling])
    assert failed == []
    js = (await hive.connect(subjects.SPAWNER)).jetstream()
    assert (await js.stream_info(subjects.STATS_STREAM)).state.messages == stored > 60


async def test_a_service_started_before_nats_waits_for_it_instead_of_failing(tmp_path: Path) -> None:
    server = NatsServer(tmp_path / "nats", port=free_port())
    server.identities.ensure_host()
    env = {
        "HIVE_NATS_URL": server.url,
        "HIVE_NATS_CREDS": str(server.identities.seed_path("broker")),
        "HIVE_STATE_DIR": str(tmp_path / "state"),
    }
    broker = Child("broker", [sys.executable, "-I", "-m", "hive_broker"], env={**os.environ, **env}).start()
    try:
        broker.wait_for(r"event=start_retry", 30)  # NATS is not there yet: it says so, and tries again
        server.start()
        try:
            broker.wait_for(SERVICE_READY, 60)
        finally:
            broker.stop()
            server.stop()
    finally:
        broker.stop()
