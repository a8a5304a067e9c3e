# How the spawner evaluates an agent.nix: with nixpkgs' module system (`<hivelib>`), against the agent options
# (./agent-options.nix), in restricted mode, with nothing else of the host. It gives `config.hyperhive` as JSON.
#
# agent.nix is a NixOS module, but the spawner has no NixOS and builds nothing: what it sets outside `hyperhive`
# (environment.*, services.*) is taken as it is (a root freeform type) and never evaluated — the container's own
# build checks it. `hyperhive` itself is a strict submodule, so a freeform root does not hide a typo in it.
# `defaultModel`: the hive's choice of model where agent.nix names none ("": the options' default).
{ defaultModel }:
let
  lib = import <hivelib>;
  unavailable = name: throw ''
    `${name}' is not available where the hive evaluates agent.nix (no nixpkgs, nothing is built): the `hyperhive'
    options must not use it. Name packages in `hyperhive.packages', and programs by their path in the container.'';
  evaluated = lib.evalModules {
    modules = [
      ./agent-options.nix
      <agent/agent.nix>
      { _module.freeformType = lib.types.lazyAttrsOf lib.types.raw; }
      (lib.optionalAttrs (defaultModel != "") { hyperhive.model = lib.mkDefault defaultModel; })
    ];
    specialArgs = {
      pkgs = unavailable "pkgs";
      modulesPath = unavailable "modulesPath";
    };
  };
  # The options are the hive's alone: an agent.nix that declared `hyperhive` again (a submodule declared twice is
  # merged, so it could add a freeformType that swallows typos) or disabled the options file would get past the
  # strict check quietly.
  declared = evaluated.options.hyperhive.declarations or [ ];
in
if declared != [ (toString ./agent-options.nix) ] then
  throw "agent.nix may not declare, extend or disable the hyperhive options: they are the hive's (declared in: ${
    if declared == [ ] then "nothing" else builtins.concatStringsSep ", " declared
  })."
else
  evaluated.config.hyperhive
