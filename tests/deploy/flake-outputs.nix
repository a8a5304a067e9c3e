# deploy/nixos/flake.nix's outputs called with stand-ins for its inputs (nixpkgs' real lib; recording uv2nix,
# pyproject-nix and nixpkgs packages), so a test sees how it wires the package, the modules and the VM test.
{ root }:
let
  lib = import <hivelib>;
  system = "x86_64-linux";
  package = name: { type = "derivation"; inherit name; outPath = "${root}/pkgs/${name}"; };
  pkgs = {
    stdenv.hostPlatform.system = system;
    python312 = "python312";
    # pyproject-nix's `build.packages`, called for a Python: a scope whose overlays and venv the test reads.
    callPackage = fn: args: {
      overrideScope = overlay: {
        overlays = overlay { } { };
        mkVirtualEnv = name: deps: package name // { inherit deps; inherit (args) python; overlays = overlay { } { }; };
      };
    };
    testers.runNixOSTest = test: test;
  };
  workspace = root: {
    workspaceRoot = toString root;
    deps.default = { lockedFrom = toString root; };
    mkPyprojectOverlay = args: _final: _prev: { workspace = args; };
  };
  inputs = {
    nixpkgs = { inherit lib; legacyPackages.${system} = pkgs; legacyPackages.aarch64-linux = pkgs; };
    uv2nix.lib.workspace.loadWorkspace = { workspaceRoot }: workspace workspaceRoot;
    pyproject-nix.build.packages = "pyproject-nix's builders";
    pyproject-build-systems.overlays.default = _final: _prev: { build-systems = true; };
  };
  flake = import <repo/deploy/nixos/flake.nix>;
  self = flake.outputs (inputs // { inherit self; }) // {
    sourceInfo.outPath = "${root}/source";
    inputs = inputs;
  };
  host = lib.evalModules {
    modules = [ self.nixosModules.default <tests/stubs.nix> { services.hyperhive.enable = true; } ];
    specialArgs = { pkgs = pkgs // lib.genAttrs [ "nats-server" "coreutils" "nixos-container" "systemd" "nix" "git" "util-linux" ] package // {
      path = "${root}/nixpkgs";
      writeShellScriptBin = name: text: package name;
    }; };
  };
in
{
  inputs = lib.mapAttrs (_: i: i.url or null) flake.inputs;
  follows = lib.mapAttrs (_: i: i.inputs or { }) flake.inputs;
  package = { inherit (self.packages.${system}.default) name deps python overlays; };
  systems = builtins.attrNames self.packages;
  modules = builtins.attrNames self.nixosModules;
  hostPackage = host.config.services.hyperhive.package;
  containerFlake = host.config.services.hyperhive.agents.containerFlake;
  checks = builtins.attrNames self.checks.${system};
  vm =
    let test = self.checks.${system}.vm; in
    {
      inherit (test) name testScript;
      host = { inherit ((test.nodes.host { inherit pkgs; }).services) hyperhive; };
    };
}
