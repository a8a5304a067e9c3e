# deploy/nixos/module.nix evaluated with the real module system against ./stubs.nix, with `settings` (JSON) as the
# operator's configuration and stand-in packages under `root` (so the rendered units name files a test can make).
{ root, settings }:
let
  lib = import <hivelib>;
  package = name: { type = "derivation"; inherit name; outPath = "${root}/pkgs/${name}"; };
  pkgs = lib.genAttrs [ "nats-server" "coreutils" "nixos-container" "systemd" "nix" "git" "util-linux" ] package // {
    path = "${root}/nixpkgs";
    writeShellScriptBin = name: text: package name // { inherit text; };
  };
  evaluated = lib.evalModules {
    modules = [
      <repo/deploy/nixos/module.nix>
      ./stubs.nix
      {
        services.hyperhive.package = package "hyperhive-env";
        services.hyperhive.agents.containerFlake = "path:${root}/hyperhive-source?dir=deploy/nixos";
      }
      { config = builtins.fromJSON settings; }
    ];
    specialArgs = { inherit pkgs; };
  };
  inherit (evaluated) config;
  failed = map (a: a.message) (lib.filter (a: !a.assertion) config.assertions);
in
if failed != [ ] then { inherit failed; } else {
  failed = [ ];
  inherit (config) users systemd nix;
  commands = map (p: { inherit (p) name text; }) config.environment.systemPackages;
  services.postgresql = config.services.postgresql;
  networking = config.networking;
}
