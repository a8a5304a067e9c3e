# The options of deploy/nixos/module.nix (services.hyperhive.*) and of the agent options (hyperhive.*), as the
# module system documents them (lib.optionAttrSetToDocList, what NixOS's manual is made from), for docs/nixos.md.
{ root }:
let
  lib = import <hivelib>;
  pkgs = { path = "${root}/nixpkgs"; };
  documented = prefix: modules:
    map
      (o: {
        inherit (o) name type;
        description = o.description or "";
        default = o.default.text or null;
        example = o.example.text or null;
      })
      (lib.filter (o: lib.hasPrefix prefix o.name && o.visible && !o.internal)
        (lib.optionAttrSetToDocList (lib.evalModules { inherit modules; specialArgs = { inherit pkgs; }; }).options));
in
{
  host = documented "services.hyperhive." [ <repo/deploy/nixos/module.nix> ./stubs.nix ];
  agent = documented "hyperhive." [ <repo/services/spawner/src/hive_spawner/nix/agent-options.nix> ];
}
