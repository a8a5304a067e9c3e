"""Harness benchmark: what the harness adds to a turn, and what an idle harness costs in memory. Prints JSON.

A turn is the claude CLI's run; the harness around it takes the messages, writes the MCP config, streams and
publishes the CLI's events, acknowledges and publishes the turn's figures. To see that cost on its own, the same
CLI (same flags, environment, working dir and session, against the same scripted Messages API) is also run bare,
interleaved with the harness's turns; and once more without the MCP flags, to show what the hyperhive MCP tools
(served by the harness over loopback HTTP) cost a turn. Then `python -m hive_harness` is started as its own
process and its memory read when idle.

A Bash call checked by the harness (the CLI's PreToolUse command hook, `curl` to the harness on loopback) is compared
with the same call allowed by the CLI's own rules (`--allowedTools Bash(ls *)`, no hook): the same CLI run with
`--calls` Bash calls, interleaved; the difference per call is what the check costs.
    uv run python bench/bench_harness.py [--turns 20] [--calls 10] [--out FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from pathlib import Path

from benchhive import BenchFailed, arguments, bench_hive, run, summary
from nats.aio.client import Client

from hive_harness.__main__ import LOOP
from hive_harness.service import Harness
from hive_harness.settings import HarnessSettings
from hive_harness.turn import cli_env, cli_flags
from hivectl.natsserver import NatsServer
from hivetest.messages_api import Text, ToolUse, serve_messages_api
from hyperhive import bus, streams
from hyperhive.process import Child
from hyperhive.settings import HiveSettings
from hyperhive.wire import subjects
from hyperhive.wire.models import AgentPolicy, BashPolicy, SendReply, SendRequest

CLAUDE = Path(__file__).parents[1] / "node_modules" / ".bin" / "claude"
SCRIPTED_ENV = {"ANTHROPIC_API_KEY": "scripted", "DISABLE_TELEMETRY": "1",  # as in tests/harness/conftest.py
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "CLAUDE_CODE_MAX_RETRIES": "0"}  # fmt: skip
MODEL = "scripted-model"
P50_P95 = (50, 95), 1  # percentiles and digits of a turn's figures


def without_mcp(flags: list[str]) -> list[str]:
    """`flags` less the MCP ones (the --settings with the Bash hook stays)."""
    out, rest = [], iter(flags)
    for flag in rest:
        if flag in ("--mcp-config", "--allowedTools"):
            next(rest)  # and its value
        elif flag != "--strict-mcp-config":
            out.append(flag)
    return out


def cli_allowed(flags: list[str], rule: str) -> list[str]:
    """`flags` without the hook's --settings, with `rule` in --allowedTools: the CLI's own rules decide."""
    out, rest = [], iter(flags)
    for flag in rest:
        if flag == "--settings":
            next(rest)  # and its value
        elif flag == "--allowedTools":
            out += [flag, f"{next(rest)},{rule}"]
        else:
            out.append(flag)
    return out


async def bare_cli(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    """One claude CLI run as the harness starts it, read to its end; its wall time."""
    t = time.perf_counter()
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    out, err = await proc.communicate()
    elapsed = time.perf_counter() - t
    events = [json.loads(line) for line in out.splitlines() if line.startswith(b"{")]
    results = [event for event in events if event.get("type") == "result"]
    if proc.returncode != 0 or not results or results[-1].get("is_error"):
        raise BenchFailed(f"bare claude run failed ({proc.returncode}): {(out[-1500:] + err[-500:]).decode()}")
    return elapsed


async def connect(server: NatsServer, creds: Path, name: str, agent: bool = False) -> Client:
    settings = HiveSettings(nats_url=server.url, nats_creds=creds)
    return await bus.connect(settings, name=name, inbox_prefix=subjects.reply_prefix(name) if agent else None)


async def turns(server: NatsServer, root: Path, n: int, calls: int) -> dict[str, object]:
    alice_seed = root / "agents" / "alice.nk"
    bob = await connect(server, root / "agents" / "bob.nk", "bob", agent=True)
    state = root / "alice"
    state.mkdir()
    policy = AgentPolicy(agent="alice", model=MODEL, allowedRecipients=["bob"],
                         allowedBash=BashPolicy(allow=["ls *"]))  # fmt: skip
    policy_file = root / "run-hive" / "policy.json"  # where the spawner's read-only bind would be
    policy_file.parent.mkdir()
    policy_file.write_text(policy.model_dump_json(by_alias=True))
    with serve_messages_api() as api:
        settings = HarnessSettings(
            nats_url=server.url, nats_creds=alice_seed, state_dir=state, agent="alice", claude=[str(CLAUDE)],
            claude_env={**SCRIPTED_ENV, "ANTHROPIC_BASE_URL": api.url}, policy_file=policy_file,
            cli_home=root / "no-home",
        )  # fmt: skip
        harness = Harness(nc := await connect(server, alice_seed, "alice", agent=True), settings)
        tools = AsyncExitStack()  # the harness's MCP tools, served on loopback for the whole run
        await harness.open(tools)
        flags, env = cli_flags(state, policy, harness.tools), cli_env(settings)

        async def harness_turn(i: int) -> float:
            await bus.call(bob, subjects.agent("bob", "send"), SendRequest(to="alice", body=f"ping {i}"), SendReply)
            api.script([Text("ok")])
            t = time.perf_counter()
            result = await harness.run_once(wait=10)
            elapsed = time.perf_counter() - t
            if result is None or result.stats.exit_class != "ok":
                raise BenchFailed(f"harness turn failed: {result}")
            return elapsed

        def bare(cli_flags: list[str]) -> Callable[[int], Awaitable[float]]:
            async def run(i: int) -> float:
                prompt = f"You have 1 new message.\n\nFrom bob:\nping {i}"  # what the harness writes for it
                session = (state / "session-id").read_text().strip()
                api.script([Text("ok")])
                return await bare_cli(
                    [str(CLAUDE), "-p", prompt, "--output-format", "stream-json", "--verbose", "--model", MODEL,
                     *cli_flags, "--resume", session], env, state,
                )  # fmt: skip

            return run

        def bash(cli_flags: list[str]) -> Callable[[int], Awaitable[float]]:
            async def run(i: int) -> float:
                session = (state / "session-id").read_text().strip()
                api.script(*([ToolUse("Bash", {"command": "ls -a"})] for _ in range(calls)), [Text("ok")])  # type: ignore[arg-type]
                elapsed = await bare_cli(
                    [str(CLAUDE), "-p", f"list {i}", "--output-format", "stream-json", "--verbose", "--model", MODEL,
                     *cli_flags, "--resume", session], env, state,
                )  # fmt: skip
                last = json.dumps(api.requests[-1]["messages"][-1])
                if '"is_error": true' in last or "mcp.json" not in last:
                    raise BenchFailed(f"a Bash call did not run: {last[:500]}")
                return elapsed

            return run

        kinds = {"harness": harness_turn, "bare": bare(flags), "bare_no_mcp": bare(without_mcp(flags))}
        samples: dict[str, list[float]] = {kind: [] for kind in kinds}
        for i in range(n + 1):  # round 0 starts the session and warms caches: not counted
            order = list(kinds)[i % 3 :] + list(kinds)[: i % 3]  # rotated, so no kind always follows another
            for kind in order:
                elapsed = await kinds[kind](i)
                if i:
                    samples[kind].append(elapsed)
        harness.gate.use(policy.allowed_bash)  # the checked runs below are the CLI's alone, the gate the harness's
        checks = {"checked": bash(flags), "cli_allowed": bash(cli_allowed(flags, "Bash(ls *)"))}
        bash_samples: dict[str, list[float]] = {kind: [] for kind in checks}
        for i in range(n + 1):
            for kind in list(checks)[i % 2 :] + list(checks)[: i % 2]:
                elapsed = await checks[kind](i)
                if i:
                    bash_samples[kind].append(elapsed)
        denied = harness.gate.denied
        await tools.aclose()
        await nc.close()
    await bob.close()
    if denied:
        raise BenchFailed(f"the gate denied {denied} benchmark calls")
    ours, bare_cli_summary, no_mcp = (summary(samples[kind], *P50_P95) for kind in ("harness", "bare", "bare_no_mcp"))
    checked, allowed = (summary(bash_samples[kind], *P50_P95) for kind in ("checked", "cli_allowed"))
    return {
        "bash_calls_per_run": calls,
        "bash_checked_by_harness_hook": checked,
        "bash_allowed_by_cli_rules": allowed,
        "bash_check_cost_per_call_p50_ms": round((checked["p50_ms"] - allowed["p50_ms"]) / calls, 1),
        "harness_run_once": ours,
        "bare_cli_same_flags": bare_cli_summary,
        "bare_cli_without_mcp_flags": no_mcp,
        "harness_overhead_p50_ms": round(ours["p50_ms"] - bare_cli_summary["p50_ms"], 1),
        "harness_ratio_p50": round(ours["p50_ms"] / bare_cli_summary["p50_ms"], 3),
        "mcp_server_cost_p50_ms": round(bare_cli_summary["p50_ms"] - no_mcp["p50_ms"], 1),
    }


def memory(pid: int) -> dict[str, float]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return {f"{key}_mib": round(int(fields[key].split()[0]) / 1024, 1) for key in ("VmRSS", "VmHWM")}


async def idle_memory(server: NatsServer, root: Path) -> dict[str, object]:
    watcher = await connect(server, server.identities.seed_path("dashboard"), "watcher")
    started = await watcher.subscribe(subjects.agent_event("alice", "turn_state"))
    beats = await watcher.subscribe(subjects.agent("alice", subjects.HEARTBEAT))
    await watcher.flush()
    state = root / "alice-idle"
    state.mkdir()
    env = {
        **os.environ, "HIVE_NATS_URL": server.url, "HIVE_NATS_CREDS": str(root / "agents" / "alice.nk"),
        "HIVE_AGENT": "alice", "HIVE_STATE_DIR": str(state), "HIVE_CLAUDE": json.dumps([str(CLAUDE)]),
        "HIVE_HEARTBEAT_SECONDS": "0.2",
    }  # fmt: skip
    harness = Child("harness", [sys.executable, "-I", "-m", "hive_harness"], env=env).start()
    try:
        t = time.perf_counter()
        await started.next_msg(timeout=30)
        ready_ms = round((time.perf_counter() - t) * 1000)
        for _ in range(3):  # let it settle: three heartbeats after it said it was up
            await beats.next_msg(timeout=10)
        out: dict[str, object] = {"start_to_ready_ms": ready_ms, "harness": memory(harness.pid)}
    except TimeoutError as exc:
        tail = "\n".join(harness.lines[-20:])
        raise BenchFailed(
            f"the idle harness did not come up (exit code {harness.returncode}); its last lines:\n{tail}"
        ) from exc
    finally:
        harness.stop()
        await watcher.close()
    code = "import nats, pydantic, time; print('ready', flush=True); time.sleep(600)"
    baseline = Child("baseline", [sys.executable, "-c", code]).start()
    try:
        baseline.wait_for("ready", 30)
        out["python_import_nats_pydantic"] = memory(baseline.pid)
    finally:
        baseline.stop()
    return out


async def main(args: argparse.Namespace) -> dict[str, object]:
    with bench_hive() as hive:
        server, root = hive.server, hive.root
        for name in ("alice", "bob"):
            server.identities.add_agent(name, root / "agents" / f"{name}.nk")
        server.reload()
        setup = await connect(server, server.identities.seed_path("spawner"), "setup")
        js = setup.jetstream()
        await streams.declare(js)
        kv = await js.key_value(subjects.POLICY_BUCKET)
        for name, partner in (("alice", "bob"), ("bob", "alice")):
            policy = AgentPolicy(agent=name, allowedRecipients=[partner])
            await kv.put(name, bus.encode(policy))
        await setup.close()
        hive.service("broker")
        return {
            "benchmark": "harness",
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "per_turn": await turns(server, root, args.turns, args.calls),
            "idle_memory": await idle_memory(server, root),
        }


if __name__ == "__main__":
    parser = arguments(__doc__)
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--calls", type=int, default=10, help="Bash calls per run in the check comparison")
    args = parser.parse_args()
    run(main(args), args.out, LOOP)  # the turns run in this process: on the harness's loop
