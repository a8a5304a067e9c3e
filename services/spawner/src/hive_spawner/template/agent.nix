# An agent of the hive. The manager edits this file in the agent's proposed repo; the operator approves a commit;
# the spawner evaluates `hyperhive` (no nixpkgs needed) into the policy the broker and harness enforce.
{ pkgs, ... }:
{
  hyperhive = {
    # The Claude model for this agent's turns (the operator's /model overrides it until changed back).
    model = "claude-sonnet-4-5";

    # Who this agent may send messages to. "manager" and "operator" are names too; "*" allows broadcasts.
    allowedRecipients = [ "manager" ];

    # Bash commands, checked part by part by the harness: allowed, denied, or asked of the operator.
    allowedBash = {
      allow = [ ];
      deny = [ ];
      ask = [ ];
    };

    # Extra MCP servers: name = { command = "…"; args = [ ]; env = { }; allowedTools = [ "tool" ]; };
    mcpServers = { };

    # When /state/notes.md grows past this many bytes, a short session rewrites it.
    notesThreshold = 16384;
  };

  # Packages inside the container (nixos backend): environment.systemPackages = [ pkgs.git ];
}
