# deploy/nixos/container.nix evaluated with the real module system against ./stubs.nix, with an agent's agent.nix
# (from `<agent>`) and stand-in packages under `root`: what each agent's container gets.
{ root }:
let
  lib = import <hivelib>;
  package = name: { type = "derivation"; inherit name; outPath = "${root}/pkgs/${name}"; pname = name; };
  names = [ "iproute2" "gawk" "claude-code" "bash" "coreutils" "git" "ripgrep" ];
  pkgs = lib.genAttrs names package // {
    python3Packages.pytest = package "pytest";
    # The unit names a file the test writes (from `start` below): the store path a real build would make.
    writeShellScript = name: text: "${root}/scripts/${name}";
  };
  evaluated = lib.evalModules {
    modules = [
      (import <repo/deploy/nixos/container.nix> { package = package "hyperhive-env"; })
      ./stubs.nix
      <agent/agent.nix>
    ];
    specialArgs = { inherit pkgs; };
  };
  inherit (evaluated) config;
in
{
  start = import <repo/deploy/nixos/harness-start.nix> { inherit pkgs; package = package "hyperhive-env"; };
  inherit (config) boot system hyperhive;
  networking.useDHCP = config.networking.useDHCP;
  packages = map (p: p.name) config.environment.systemPackages;
  usrbinenv = config.environment.usrbinenv;
  tmpfiles = config.systemd.tmpfiles.rules;
  unfree = map (name: config.nixpkgs.config.allowUnfreePredicate { inherit name; }) [ "claude-code" "vscode" ];
  systemd.services.hyperhive-harness = config.systemd.services.hyperhive-harness // {
    path = map toString config.systemd.services.hyperhive-harness.path;
  };
}
