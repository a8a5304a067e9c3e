# hyperhive on NixOS: `nixosModules.default` (the host: services.hyperhive), `nixosModules.container` (each agent's
# container, which the spawner builds), `packages.<system>.default` (the Python environment from uv.lock) and
# `checks.<system>.vm` (a NixOS VM test, for a host with KVM). Use it as `git+file:…?dir=deploy/nixos` or
# `github:…?dir=deploy/nixos`: the Python environment is built from the whole repository (../..).
{
  description = "hyperhive: Claude Code agents in nixos-containers, over NATS and PostgreSQL";

  inputs = {
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";
    pyproject-nix = {
      url = "github:pyproject-nix/pyproject.nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    uv2nix = {
      url = "github:pyproject-nix/uv2nix";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
    pyproject-build-systems = {
      url = "github:pyproject-nix/build-system-pkgs";
      inputs.pyproject-nix.follows = "pyproject-nix";
      inputs.uv2nix.follows = "uv2nix";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs = { self, nixpkgs, pyproject-nix, uv2nix, pyproject-build-systems }:
    let
      inherit (nixpkgs) lib;
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      packages = forAll (pkgs: {
        default = import ./package.nix {
          inherit pkgs lib uv2nix pyproject-nix pyproject-build-systems;
          workspaceRoot = ../..;
        };
      });

      nixosModules.default = { pkgs, ... }: {
        imports = [ ./module.nix ];
        services.hyperhive.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
        # This flake, by its store path: a container built from it takes the same nixpkgs and harness, pinned.
        services.hyperhive.agents.containerFlake = lib.mkDefault "path:${self.sourceInfo.outPath}?dir=deploy/nixos";
      };

      nixosModules.container = { pkgs, ... }: {
        imports = [ (import ./container.nix { package = self.packages.${pkgs.stdenv.hostPlatform.system}.default; }) ];
      };

      checks = forAll (pkgs: {
        vm = import ./vm-test.nix { inherit pkgs self; };
      });
    };
}
