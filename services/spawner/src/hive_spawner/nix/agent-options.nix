# The agent options: everything an agent.nix may say under `hyperhive`, typed, with defaults and descriptions.
#
# This file is the one definition. The spawner evaluates every agent.nix against it with `lib.evalModules` (in
# restricted mode, from the hive's own package: no agent can write it), and each agent's container imports the same
# file into its NixOS configuration. Its defaults are `AgentPolicy`'s, and the tests prove it
# (tests/spawner/test_evaluate.py compares names, defaults and types), so the two cannot drift apart unnoticed.
#
# `hyperhive` is one strict submodule: a misspelt option under it is an error ("The option `hyperhive.modle' does
# not exist"), even where the rest of agent.nix (environment.*, services.*) is NixOS's to check. Values are checked
# for their shape here and for their content (model names, recipient names) by `AgentPolicy` right after.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  strings = description: mkOption {
    type = types.listOf types.str;
    default = [ ];
    inherit description;
  };
  mcpServer = types.submodule {
    options = {
      command = mkOption {
        type = types.str;
        description = "The program that serves MCP over stdio, by its path inside the container.";
      };
      args = strings "Its arguments.";
      env = mkOption {
        type = types.attrsOf types.str;
        default = { };
        description = "Its environment (no secrets: agent.nix is in the operator's review and the store).";
      };
      allowedTools = strings "The tools of this server the agent may call without asking.";
    };
  };
in
{
  options.hyperhive = mkOption {
    description = "This agent's policy: what the broker and its harness enforce.";
    default = { };
    type = types.submodule {
      options = {
        model = mkOption {
          type = types.str;
          default = "claude-sonnet-4-5";
          description = "The Claude model for this agent's turns (the operator's /model overrides it until changed back).";
        };
        allowedRecipients = strings ''
          Who this agent may send messages to: agent names, "manager", "operator" (only when listed), "*" for every
          other agent. The manager may send anywhere.
        '';
        allowedBash = mkOption {
          description = "Bash commands, checked by the harness before they run (the grammar is in the template agent.nix).";
          default = { };
          type = types.submodule {
            options = {
              allow = strings "Commands that run (each pattern is a whole command).";
              deny = strings "Commands that never run (any that starts so); deny wins.";
              ask = strings "Commands the operator decides (any that starts so).";
            };
          };
        };
        mcpServers = mkOption {
          type = types.attrsOf mcpServer;
          default = { };
          description = "Extra MCP servers, by name.";
        };
        notesThreshold = mkOption {
          type = types.int;
          default = 16384;
          description = "When /state/notes.md grows past this many bytes, a short session rewrites it.";
        };
        acceptTools = mkOption {
          type = types.bool;
          default = true;
          description = "Take messages from the tools the operator admitted (CI jobs, scripts: `From tool <name>`).";
        };
        packages = mkOption {
          type = types.listOf (types.strMatching "[A-Za-z_][A-Za-z0-9_'-]*(\\.[A-Za-z_][A-Za-z0-9_'-]*)*");
          default = [ ];
          example = [ "git" "ripgrep" "python3Packages.pytest" ];
          description = ''
            Packages on the agent's PATH inside its container, by their attribute names in the container's nixpkgs.
            Names, not derivations, so the spawner checks them without nixpkgs; the container resolves them. Not
            part of the policy the broker and harness read.
          '';
        };
      };
    };
  };
}
