"""The spawner evaluates agent.nix with nixpkgs' real module system (`HIVE_NIX_LIB`) against the agent options, in
restricted mode: the options' defaults are `AgentPolicy`'s, and a misspelt option or a wrong type is refused with the
evaluator's own sentence, which reaches the operator as the approval's failure reason."""

import json
import types
import typing
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from hive_approver.__main__ import start as start_approver
from hive_spawner.__main__ import start as start_spawner
from hive_spawner.evaluate import CONTAINER_ONLY, NIX_DIR, SET_BY_SPAWNER, evaluate, find_nix_lib, run_restricted
from hive_spawner.repos import git
from hive_spawner.settings import SpawnerSettings
from hivetest.agents import make_agent, operator_call
from hivetest.hive import TestHive
from hivetest.services import approver_settings
from hyperhive import bus
from hyperhive.wire import subjects
from hyperhive.wire.errors import ErrorCode, HiveError
from hyperhive.wire.models import AgentPolicy, Approval, ApprovalsReply, ApprovalsRequest, DecisionRequest

TEMPLATE = NIX_DIR.parent / "template" / "agent.nix"


def checkout(tmp_path: Path, agent_nix: str, **files: str) -> Path:
    folder = tmp_path / "checkout"
    folder.mkdir()
    (folder / "agent.nix").write_text(agent_nix)
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def refusal(folder: Path) -> str:
    with pytest.raises(HiveError) as err:
        evaluate(folder, "alice")
    assert err.value.code == ErrorCode.INVALID_REQUEST
    return err.value.message


def options_as_data() -> dict[str, Any]:
    out = run_restricted("import <hive/options.nix>", {"hivelib": find_nix_lib(), "hive": NIX_DIR})
    data: dict[str, Any] = json.loads(out)
    return data


def nix_type(annotation: Any) -> dict[str, Any]:
    """The module-system type an `AgentPolicy` field's annotation corresponds to, as `options.nix` writes types."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is typing.Annotated:
        return nix_type(args[0])
    if origin is list:
        return {"name": "listOf", "elemType": nix_type(args[0])}
    if origin is dict:
        assert args[0] is str
        return {"name": "attrsOf", "elemType": nix_type(args[1])}
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return {"name": "submodule", "options": policy_options(annotation)}
    assert not isinstance(annotation, types.UnionType), f"no option type for {annotation}"
    return {"name": {str: "str", bool: "bool", int: "int"}[annotation]}


def policy_options(model: type[BaseModel], skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    fields: dict[str, FieldInfo] = model.model_fields
    return {
        field.alias or name: {"type": nix_type(field.annotation), "required": field.is_required()}
        for name, field in fields.items()
        if name not in skip
    }


def test_the_options_are_agent_policys_fields_with_its_types_and_defaults() -> None:
    """Written in Nix for the module system and in Python for the wire: this is what keeps them one definition."""
    data = options_as_data()
    options = {k: v for k, v in data["options"].items() if k not in CONTAINER_ONLY}
    assert options == policy_options(AgentPolicy, SET_BY_SPAWNER)
    defaults = {k: v for k, v in data["defaults"].items() if k not in CONTAINER_ONLY}
    assert defaults == AgentPolicy(agent="alice").model_dump(by_alias=True, exclude=set(SET_BY_SPAWNER))
    assert set(CONTAINER_ONLY) <= set(data["options"])


def test_an_agent_nix_that_sets_nothing_gets_exactly_the_default_policy(tmp_path: Path) -> None:
    assert evaluate(checkout(tmp_path, "{ }\n"), "alice") == AgentPolicy(agent="alice")


def test_the_template_evaluates_with_every_option_it_shows(tmp_path: Path) -> None:
    policy = evaluate(checkout(tmp_path, TEMPLATE.read_text()), "alice")
    assert policy == AgentPolicy(agent="alice", allowedRecipients=["manager"])


def test_an_agent_nix_is_a_nixos_module_whose_other_options_the_container_checks(tmp_path: Path) -> None:
    """NixOS options outside `hyperhive`, `pkgs` where nothing forces it, `lib`, `config`, imports within the
    checkout and definitions merged across them: the module system's own behaviour, not a lookalike."""
    folder = checkout(
        tmp_path,
        """{ config, lib, pkgs, ... }: {
          imports = [ ./bash.nix ];
          environment.systemPackages = [ pkgs.git ];
          services.postgresql.enable = true;
          hyperhive.allowedBash.allow = [ "git status" ];
          hyperhive.model = lib.mkForce "claude-opus-4-1";
          hyperhive.notesThreshold = 8 * 1024;
          hyperhive.allowedBash.ask = lib.optional config.services.postgresql.enable "psql";
          hyperhive.packages = [ "git" "python3Packages.pytest" ];
        }
        """,
        **{
            "bash.nix": """{
              hyperhive.allowedBash.allow = [ "ls *" ];
              hyperhive.model = "claude-haiku-4-5";
              hyperhive.mcpServers.lint.command = "/run/current-system/sw/bin/lint-mcp";
              hyperhive.mcpServers.lint.allowedTools = [ "check" ];
            }
            """
        },
    )
    policy = evaluate(folder, "alice")
    assert policy.model == "claude-opus-4-1"  # mkForce won over the plain definition
    assert sorted(policy.allowed_bash.allow) == ["git status", "ls *"]  # lists merged across imports
    assert policy.notes_threshold == 8192
    assert policy.allowed_bash.ask == ["psql"]  # config, as the rest of agent.nix set it
    assert policy.mcp_servers["lint"].allowed_tools == ["check"]
    assert policy.mcp_servers["lint"].args == []


def test_the_hives_default_model_replaces_the_options_default_but_not_an_agents_choice(tmp_path: Path) -> None:
    folder = checkout(tmp_path, "{ }\n")
    assert evaluate(folder, "alice", default_model="claude-opus-4-1").model == "claude-opus-4-1"
    (folder / "agent.nix").write_text('{ hyperhive.model = "claude-haiku-4-5"; }\n')
    assert evaluate(folder, "alice", default_model="claude-opus-4-1").model == "claude-haiku-4-5"


@pytest.mark.parametrize(
    ("agent_nix", "said"),
    [
        (
            '{ hyperhive.modle = "claude-opus-4-1"; }',
            ["The option `hyperhive.modle' does not exist.", "In `agent.nix'", "Did you mean `hyperhive.model'"],
        ),
        (
            '{ hyperhive.notesThreshold = "big"; }',
            ["`hyperhive.notesThreshold' is not of type `signed integer'", '"big"'],
        ),
        ('{ hyperhive.acceptTools = "yes"; }', ["`hyperhive.acceptTools' is not of type `boolean'"]),
        ('{ hyperhive.allowedBash.alow = [ "ls" ]; }', ["`hyperhive.allowedBash.alow' does not exist"]),
        ('{ hyperhive.allowedBash.allow = "ls"; }', ["`hyperhive.allowedBash.allow' is not of type `list of string'"]),
        (
            '{ hyperhive.mcpServers.lint = { command = "lint"; allowedTool = [ ]; }; }',
            [
                "`hyperhive.mcpServers.lint.allowedTool' does not exist",
                "Did you mean `hyperhive.mcpServers.lint.allowedTools'",
            ],
        ),
        (
            "{ hyperhive.mcpServers.lint.args = [ ]; }",
            ["The option `hyperhive.mcpServers.lint.command' was accessed but has no value defined"],
        ),
        (
            '{ hyperhive.packages = [ "rm -rf" ]; }',
            ["hyperhive.packages", "is not of type `string matching the pattern"],
        ),
        (
            '{ pkgs, ... }: { hyperhive.mcpServers.x.command = "${pkgs.lint}/bin/lint"; }',
            ["`pkgs' is not available where the hive evaluates agent.nix"],
        ),
        (
            "{ hyperhive = import /etc/hostname; }",
            ["access to absolute path '/etc/hostname' is forbidden in restricted mode"],
        ),
        ('{ hyperhive.model = builtins.fetchurl "https://example.com/m"; }', ["is forbidden in restricted mode"]),
        ("{ hyperhive.model = ; }", ["syntax error"]),
        (
            "{ lib, ... }: { options.hyperhive = lib.mkOption { type = lib.types.submodule { "
            'freeformType = lib.types.attrs; }; }; config.hyperhive.modle = "x"; }',
            ["agent.nix may not declare, extend or disable the hyperhive options", "declared in: agent.nix, "],
        ),
        (
            '{ disabledModules = [ <hive/agent-options.nix> ]; hyperhive.modle = "x"; }',
            ["may not declare, extend or disable the hyperhive options: they are the hive's (declared in: nothing)"],
        ),
    ],
)
def test_a_misspelt_option_or_a_wrong_type_is_refused_with_the_evaluators_sentence(
    tmp_path: Path, agent_nix: str, said: list[str]
) -> None:
    message = refusal(checkout(tmp_path, agent_nix + "\n"))
    assert message.startswith("agent.nix of alice does not evaluate: ")
    for words in said:
        assert words in message
    assert str(tmp_path) not in message  # the checkout's temporary path says nothing to the reader
    assert "--show-trace" not in message


@pytest.mark.parametrize(
    ("agent_nix", "said"),
    [
        (
            '{ hyperhive.model = "--dangerously-skip-permissions"; }',
            "agent.nix of alice: hyperhive.model: String should",
        ),
        (
            '{ hyperhive.allowedRecipients = [ "Bob" ]; }',
            "hyperhive.allowedRecipients.0: Value error, Agent name 'Bob'",
        ),
    ],
)
def test_a_value_of_the_right_type_is_still_checked_by_agent_policy(tmp_path: Path, agent_nix: str, said: str) -> None:
    assert said in refusal(checkout(tmp_path, agent_nix + "\n"))


def test_without_a_nixpkgs_lib_evaluation_fails_saying_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = checkout(tmp_path, "{ }\n")
    monkeypatch.delenv("HIVE_NIX_LIB", raising=False)
    monkeypatch.setenv("NIX_PATH", "nixpkgs=flake:nixpkgs")  # no folder to read a lib from
    with pytest.raises(HiveError) as err:
        evaluate(folder, "alice")
    assert err.value.code == ErrorCode.UNAVAILABLE
    assert "Set HIVE_NIX_LIB to the `lib` folder of a copy of nixpkgs" in err.value.message
    monkeypatch.setenv("HIVE_NIX_LIB", str(tmp_path))
    with pytest.raises(HiveError) as err:
        evaluate(folder, "alice")
    assert f"{tmp_path} is not a nixpkgs lib" in err.value.message


def test_nixpkgs_on_nix_path_serves_when_hive_nix_lib_is_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = find_nix_lib()
    monkeypatch.delenv("HIVE_NIX_LIB")
    monkeypatch.setenv("NIX_PATH", f"other=/nowhere:nixpkgs={lib.parent}")
    assert find_nix_lib() == lib
    assert evaluate(checkout(tmp_path, "{ }\n"), "alice") == AgentPolicy(agent="alice")


async def test_a_misspelt_option_reaches_the_operator_as_the_approvals_failure_reason(
    hive: TestHive, database_url: str, operator_nc: Client
) -> None:
    async with AsyncExitStack() as stack:
        base = hive.settings(subjects.SPAWNER)
        settings = SpawnerSettings(nats_url=base.nats_url, nats_creds=base.nats_creds, state_dir=base.state_dir)
        spawner = await start_spawner(stack, settings)
        approver = await start_approver(stack, approver_settings(hive, database_url))
        spawner.repos.create("alice")
        kv = await (await hive.connect(subjects.SPAWNER)).jetstream().key_value(subjects.POLICY_BUCKET)
        revision = await kv.put("alice", bus.encode(AgentPolicy(agent="alice")))  # alice exists, as after a spawn
        manager = await make_agent(hive, approver, "manager")
        await approver.agents.caught_up(revision)
        proposed = spawner.repos.proposed("alice")
        (proposed / "agent.nix").write_text('{ ... }: { hyperhive.allowedRecipient = [ "bob" ]; }\n')
        git(proposed, "commit", "-q", "-am", "a typo")
        pending = await manager.request("apply_commit", agent="alice", commit_ref=git(proposed, "rev-parse", "HEAD"))
        events = await (await hive.connect("dashboard")).subscribe(f"{subjects.EVENTS_PREFIX}.approval_applied.>")
        await operator_call(operator_nc, "approve", DecisionRequest(id=pending.id), Approval)
        await events.next_msg(timeout=20)
        [failed] = (await operator_call(operator_nc, "approvals", ApprovalsRequest(), ApprovalsReply)).approvals
        assert failed.status == "failed"
        assert "The option `hyperhive.allowedRecipient' does not exist" in (failed.note or "")
        assert "Did you mean `hyperhive.allowedRecipients'" in (failed.note or "")
