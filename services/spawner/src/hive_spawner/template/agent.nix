# An agent of the hive. The manager edits this file in the agent's proposed repo; the operator approves a commit;
# the spawner evaluates it with the module system against the agent options (every `hyperhive` option, typed: a
# misspelt name or a wrong type is refused with the evaluator's sentence) into the policy the broker and harness
# enforce. The same options are part of the agent's container (nixos backend).
{ pkgs, ... }:
{
  hyperhive = {
    # The Claude model for this agent's turns (the operator's /model overrides it until changed back).
    model = "claude-sonnet-4-5";

    # Who this agent may send messages to. "manager" and "operator" are names too; "*" allows broadcasts.
    allowedRecipients = [ "manager" ];

    # Bash commands, checked by the harness before they run; what it cannot account for does not run.
    #
    # A rule is a pattern over a whole command, split like shell words: [NAME=value …] program [word …]
    #   - a plain word matches itself;                       "git status"      is exactly `git status`
    #   - a lone * as the last word: any further words,      "git log *"       `git log`, `git log -p --stat`
    #     none included;
    #   - * inside a word: any characters in that one word;  "nix build .#*"   `nix build .#hello`, not two targets
    #                                                        "git show --format=*"
    #   - a lone * elsewhere: exactly one word;              "git diff * --stat"
    #   - NAME=value in front: that assignment is allowed    "CI=1 make test"
    #     (never PATH, LD_*, GIT_*, BASH_ENV, HOME and the like);
    #   - ">" alone allows output redirections to files (2>/dev/null and 2>&1 need nothing).
    # `allow` rules match the whole command; `deny` and `ask` rules match any command that starts with them
    # ("rm" asks for every rm). deny wins, then allow, then ask; anything else is denied, with a sentence saying
    # what is allowed. Every command of a line counts: both sides of && || ; |, ( … ), and what `timeout`, `nice`,
    # `nohup`, `sh -c '…'` and `bash -c '…'` run.
    #
    # The program is what bash would run: the file of that name on /usr/bin:/bin (or its absolute path there);
    # `./ls`, `/state/ls` or a program elsewhere matches no rule. Of the shell builtins only echo, printf, true,
    # false, :, pwd, test and cd can be allowed (by a rule naming them).
    #
    # Commands are literal: no $variables, ${…}, $(…) or backquotes, no unquoted globs (* ? [), braces {a,b}, a
    # leading ~, &, if/for/while/case, functions. Quoted strings, here-strings (<<<'text'), here-documents whose
    # body bash leaves alone (<<'EOF'), and "$(cat <<'EOF' … EOF)" (a commit message) are fine.
    #
    # Whatever a rule says, what runs other code is refused: `git -c`, `--config-env`, `--exec-path`, `-C`,
    # `--git-dir`, `--work-tree`, `--upload-pack`, `--receive-pack`, `--exec`, `--output`, `--ext-diff`, git
    # aliases and `git config`, `difftool`, `mergetool`, `filter-branch`, `submodule`, `bisect`, `checkout-index`;
    # find -exec/-execdir/-ok/-delete; awk system()/getline/pipes/redirections; sed e/w and -i; tar
    # --to-command/--checkpoint-action/-I/-x; rsync -e; python -c; perl/ruby/node -e; curl/wget writing files;
    # make --eval; nix run/develop/shell/--option; and xargs, env, sudo, less, vim, man and the like entirely.
    #
    # Example:  allow = [ "git status" "git log *" "git diff *" "git add *" "git commit *" "ls *" "cat *" ];
    #           deny = [ "git push" ];  ask = [ "rm" ];
    allowedBash = {
      allow = [ ];
      deny = [ ];
      ask = [ ];
    };

    # Extra MCP servers: name = { command = "…"; args = [ ]; env = { }; allowedTools = [ "tool" ]; };
    mcpServers = { };

    # When /state/notes.md grows past this many bytes, a short session rewrites it.
    notesThreshold = 16384;

    # Take messages from the tools the operator admitted (CI jobs, scripts: `From tool <name>`).
    acceptTools = true;

    # Packages on the PATH inside the container (nixos backend), by their names in nixpkgs: [ "git" "ripgrep" ].
    packages = [ ];
  };

  # Other NixOS options of the container go here too (the container's build checks them; the hive's evaluation
  # does not read them, and `pkgs` is only there for them): environment.variables.EDITOR = "vi";
}
