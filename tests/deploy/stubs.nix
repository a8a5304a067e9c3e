# Stand-ins for the NixOS options deploy/nixos/module.nix sets, declared with the types NixOS gives them (read in
# nixpkgs' nixos/modules: users-groups.nix, systemd.nix, postgresql.nix, firewall*.nix, nftables.nix, nat.nix,
# nix.nix, assertions.nix; for the container: boot, system, nixpkgs.nix, system-path.nix), so that evaluating the module with the real module system checks our option names,
# types and Nix logic (the host's: deploy/nixos/module.nix; each container's: deploy/nixos/container.nix). They are
# not NixOS: a NixOS option the module misspells or mistypes in a way these do not
# declare is caught only by the VM test (deploy/nixos/vm-test.nix) on a NixOS host.
{ lib, ... }:
let
  inherit (lib) mkOption types;
  option = type: default: mkOption { inherit type default; };
  strings = option (types.listOf types.str) [ ];
  unit = types.submodule {
    options = {
      description = option types.str "";
      wantedBy = strings;
      after = strings;
      before = strings;
      requires = strings;
      wants = strings;
      environment = option (types.attrsOf (types.nullOr (types.oneOf [ types.str types.path types.package ]))) { };
      path = option (types.listOf (types.either types.package types.str)) [ ];
      serviceConfig = option (types.attrsOf (types.oneOf [
        types.bool types.int types.str types.path (types.listOf (types.oneOf [ types.str types.path ]))
      ])) { };
      unitConfig = option (types.attrsOf types.anything) { };
    };
  };
in
{
  options = {
    assertions = option (types.listOf (types.submodule {
      options.assertion = mkOption { type = types.bool; };
      options.message = mkOption { type = types.str; };
    })) [ ];
    users.users = option (types.attrsOf (types.submodule {
      options = {
        isSystemUser = option types.bool false;
        group = option types.str "";
        description = option types.str "";
      };
    })) { };
    users.groups = option (types.attrsOf (types.submodule { })) { };
    systemd.services = option (types.attrsOf unit) { };
    systemd.tmpfiles.rules = strings;
    systemd.slices = option (types.attrsOf (types.submodule {
      options.sliceConfig = option (types.attrsOf (types.oneOf [ types.bool types.int types.str ])) { };
    })) { };
    services.postgresql = {
      enable = option types.bool false;
      ensureDatabases = strings;
      ensureUsers = option (types.listOf (types.submodule {
        options.name = mkOption { type = types.str; };
        options.ensureDBOwnership = option types.bool false;
      })) [ ];
      identMap = option types.lines "";
      authentication = option types.lines "";
    };
    nix.settings = option (types.attrsOf (types.oneOf [ types.bool types.int types.str (types.listOf types.str) ])) { };
    networking.nftables.enable = option types.bool false;
    networking.nftables.tables = option (types.attrsOf (types.submodule {
      options.family = mkOption { type = types.enum [ "ip" "ip6" "inet" "arp" "bridge" "netdev" ]; };
      options.content = option types.lines "";
    })) { };
    networking.firewall.extraInputRules = option types.lines "";
    networking.firewall.allowedTCPPorts = option (types.listOf types.port) [ ];
    boot.isContainer = option types.bool false;
    system.stateVersion = option types.str "";
    networking.useDHCP = option types.bool true;
    networking.hostName = option types.str "nixos";
    nixpkgs.config = option (types.attrsOf types.anything) { };
    environment.systemPackages = option (types.listOf types.package) [ ];
    environment.usrbinenv = option (types.nullOr types.path) "/run/current-system/sw/bin/env";
    networking.nat = {
      enable = option types.bool false;
      internalInterfaces = strings;
      externalInterface = option (types.nullOr types.str) null;
    };
  };
}
