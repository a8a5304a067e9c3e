# The agent options as data, for the tests and the generated reference: each option's type (as a tree of
# the module system's type names), whether it has a default, and what evaluating no definitions gives.
let
  lib = import <hivelib>;
  evaluated = lib.evalModules { modules = [ ./agent-options.nix ]; };
  tree = type:
    { name = type.name; }
    // (if type.name == "submodule" then { options = walk (type.getSubOptions [ ]); }
        else lib.mapAttrs (_: tree) (lib.filterAttrs (_: t: t != null) (type.nestedTypes or { })));
  walk = options: lib.mapAttrs (_: o: { type = tree o.type; required = !(o ? default); })
    (lib.filterAttrs (n: o: lib.isOption o && n != "_module") options);
in
{
  options = walk (evaluated.options.hyperhive.type.getSubOptions [ ]);
  defaults = evaluated.config.hyperhive;
}
