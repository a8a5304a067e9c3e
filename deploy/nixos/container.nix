# Each agent's container: a NixOS system the spawner builds from the agent's applied agent.nix, with the agent
# options (the same file the spawner evaluated it against) and the harness as a systemd service of this closure.
#
# What the container gets from the host, none of it through a file a flake reads (flakes are copied to the store):
# - credentials, from nspawn's --load-credential (the spawner's conf for the container): `harness.env`, the
#   harness's environment (it may hold an API key), and `nats.nk`, the agent's NATS seed;
# - binds: /state (its state dir, owned by its uid range), /run/hive (its policy and the hive's Anthropic
#   credential, read-only: the spawner rewrites the credential on `hivectl login`, and the harness reads it at
#   every turn, which a systemd credential, fixed at the unit's start, could not follow), and the manager's /agents.
# NATS is on the host, at the host side of this container's veth (nixos-container's HOST_ADDRESS, the default
# gateway it sets in the container); the host's firewall admits nothing else from here (deploy/nixos/module.nix).
{ package }:
{ config, lib, pkgs, ... }:
let
  cfg = config.hyperhive;
  resolve = name:
    lib.attrByPath (lib.splitString "." name) (throw "hyperhive.packages: nixpkgs has no package `${name}'") pkgs;
  packages = map resolve cfg.packages;
  start = pkgs.writeShellScript "hyperhive-harness-start" (import ./harness-start.nix { inherit pkgs package; });
in
{
  imports = [ ../../services/spawner/src/hive_spawner/nix/agent-options.nix ];

  boot.isContainer = true;
  system.stateVersion = "25.11";
  networking.useDHCP = false;

  # The one unfree package, allowed in the container's own nixpkgs (the host's allowUnfree does not reach it).
  nixpkgs.config.allowUnfreePredicate = pkg: lib.getName pkg == "claude-code";
  # The harness's Bash checker and the CLI's Bash find programs only on the fixed PATH /usr/bin:/bin (the harness's
  # bash_policy.FIXED_PATH), which NixOS leaves nearly empty: here /usr/bin is the system profile's bin, read-only
  # as the store is, holding the agent's packages and the tools every agent has.
  environment.systemPackages = [ pkgs.bash pkgs.coreutils pkgs.git ] ++ packages;
  environment.usrbinenv = null; # its activation would write /usr/bin/env into what is now the profile
  systemd.tmpfiles.rules = [ "L+ /usr/bin - - - - /run/current-system/sw/bin" ];

  systemd.services.hyperhive-harness = {
    description = "hyperhive harness";
    wantedBy = [ "multi-user.target" ];
    wants = [ "network-online.target" ];
    after = [ "network-online.target" ];
    path = [ pkgs.claude-code pkgs.bash pkgs.coreutils pkgs.git ] ++ packages;
    serviceConfig = {
      ExecStart = "${start}";
      LoadCredential = [ "harness.env" "nats.nk" ];
      WorkingDirectory = "/state";
      Restart = "on-failure";
      RestartSec = "5s";
    };
  };
}
