# The hive's Python environment from uv.lock with uv2nix: every workspace package (services, harness, hivectl)
# and exactly the locked dependencies, as wheels where uv.lock has them — no second list of dependencies.
# Unchecked on the machine this was written on (no network to fetch uv2nix): see docs/nixos.md.
{ pkgs, lib, uv2nix, pyproject-nix, pyproject-build-systems, workspaceRoot }:
let
  workspace = uv2nix.lib.workspace.loadWorkspace { inherit workspaceRoot; };
  overlay = workspace.mkPyprojectOverlay { sourcePreference = "wheel"; };
  pythonSet = (pkgs.callPackage pyproject-nix.build.packages { python = pkgs.python312; }).overrideScope (
    lib.composeManyExtensions [
      pyproject-build-systems.overlays.default
      overlay
    ]
  );
in
pythonSet.mkVirtualEnv "hyperhive-env" workspace.deps.default
