# The text of the harness's start script (./harness-start.sh with its programs' store paths), for container.nix's
# unit; tests/deploy runs exactly this text with stand-in programs.
{ pkgs, package }:
builtins.replaceStrings [ "@ip@" "@awk@" "@python@" ]
  [ "${pkgs.iproute2}/bin/ip" "${pkgs.gawk}/bin/awk" "${package}/bin/python" ]
  (builtins.readFile ./harness-start.sh)
