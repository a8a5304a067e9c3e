# The hyperhive host: `services.hyperhive.enable` runs a hive on this NixOS host — nats-server (JetStream, with the
# authorization the spawner generates), PostgreSQL (the hive's database and role, peer authentication), and the
# broker, approver, spawner and dashboard as hardened systemd units, each as its own user; only the spawner, which
# runs nixos-container, is root. Agents run in nixos-containers the spawner builds from ./container.nix.
#
# Secrets are files outside the Nix store, handed to units as systemd credentials (LoadCredential); the assertions
# refuse a store path for any of them. tests/deploy evaluates this module with nixpkgs' module system against
# declared stand-ins of the NixOS options it sets and checks its units with systemd-analyze.
{ config, lib, pkgs, ... }:
let
  inherit (lib) mkOption mkEnableOption mkIf types literalExpression;
  cfg = config.services.hyperhive;
  natsDir = "${cfg.stateDir}/nats";
  natsUrl = "nats://127.0.0.1:${toString cfg.nats.port}";
  python = "${cfg.package}/bin/python";
  # Users of the host services; the spawner is root (see its unit).
  users = [ "nats" "broker" "approver" "dashboard" ];
  database = "hyperhive";
  databaseUrl = "postgresql:///${database}?host=/run/postgresql&user=${database}";

  secretFile = description: mkOption {
    type = types.nullOr types.path;
    default = null;
    example = "/run/secrets/hyperhive";
    description = "${lib.trim description} A file outside the Nix store (every local user can read the store), read by systemd as a credential.";
  };

  # What every host service's unit shares: the nixpkgs modules' hardening (nats.nix, attic's atticd.nix), tightened
  # to what a Python service talking to NATS and PostgreSQL over sockets needs.
  hardening = {
    CapabilityBoundingSet = [ "" ];
    AmbientCapabilities = [ "" ];
    NoNewPrivileges = true;
    PrivateTmp = true;
    PrivateDevices = true;
    PrivateUsers = true;
    ProtectSystem = "strict";
    ProtectHome = true;
    ProtectHostname = true;
    ProtectClock = true;
    ProtectKernelTunables = true;
    ProtectKernelModules = true;
    ProtectKernelLogs = true;
    ProtectControlGroups = true;
    ProtectProc = "invisible";
    ProcSubset = "pid";
    RestrictAddressFamilies = [ "AF_UNIX" "AF_INET" "AF_INET6" ];
    RestrictNamespaces = true;
    RestrictRealtime = true;
    RestrictSUIDSGID = true;
    RemoveIPC = true;
    LockPersonality = true;
    MemoryDenyWriteExecute = true;
    SystemCallArchitectures = "native";
    SystemCallFilter = [ "@system-service" "~@privileged" "~@resources" ];
    DevicePolicy = "closed";
    UMask = "0077";
  };

  # One host service of the hive: its own user, its NATS seed as a credential, restarted when it fails.
  hiveService = name: { description, after ? [ ], requires ? [ ], environment ? { }, path ? [ ], serviceConfig ? { } }: {
    inherit description path;
    wantedBy = [ "multi-user.target" ];
    after = [ "hyperhive-nats.service" ] ++ after;
    requires = [ "hyperhive-nats.service" ] ++ requires;
    environment = {
      HIVE_NATS_URL = natsUrl;
      HIVE_NATS_CREDS = "%d/nats.nk";
      HIVE_STATE_DIR = cfg.stateDir;
      HIVE_LOG_LEVEL = cfg.logLevel;
    } // environment;
    serviceConfig = hardening // {
      Type = "simple";
      User = "hyperhive-${name}";
      Group = "hyperhive-${name}";
      # As `hivectl up` starts it; -I: nothing of the working directory or the environment on its import path.
      ExecStart = "${python} -I -m hive_${name}";
      LoadCredential = [ "nats.nk:${natsDir}/seeds/${name}.nk" ];
      Restart = "on-failure";
      RestartSec = "2s";
    } // serviceConfig;
  };
in
{
  options.services.hyperhive = {
    enable = mkEnableOption "a hyperhive: Claude Code agents in nixos-containers, over NATS and PostgreSQL";

    package = mkOption {
      type = types.package;
      defaultText = literalExpression "hyperhive.packages.\${system}.default";
      description = "The hive's Python environment (every service and the harness), built from uv.lock.";
    };

    stateDir = mkOption {
      type = types.strMatching "/.*[^/]";
      default = "/var/lib/hyperhive";
      description = "Where the hive keeps its state: NATS identities and JetStream, agents' state dirs and config repos, container flakes.";
    };

    logLevel = mkOption {
      type = types.enum [ "DEBUG" "INFO" "WARNING" "ERROR" ];
      default = "INFO";
      description = "The services' logging level (they log to the journal).";
    };

    nats = {
      listenAddress = mkOption {
        type = types.str;
        default = "0.0.0.0";
        description = ''
          Where nats-server listens. Containers reach it at their host-side veth address, which nixos-container
          picks per container, so it listens on every address; the firewall admits it only from loopback and
          the containers' veths (`ve-*`).
        '';
      };
      port = mkOption {
        type = types.port;
        default = 4222;
        description = "nats-server's client port.";
      };
    };

    dashboard = {
      listenAddress = mkOption {
        type = types.str;
        default = "127.0.0.1";
        description = "Where the dashboard listens: loopback unless a TLS proxy is in front of it.";
      };
      port = mkOption {
        type = types.port;
        default = 8420;
        description = "The dashboard's port.";
      };
      openFirewall = mkOption {
        type = types.bool;
        default = false;
        description = "Open the dashboard's port in the firewall (for a proxy on another host).";
      };
    };

    operatorPasswordFile = secretFile ''
      The operator's first dashboard password (at least 12 characters), set when the dashboard has none; a
      password changed later in the dashboard stays. Unset, the dashboard makes one and leaves it in
      `<stateDir>/dashboard/initial-password` (0600).
    '';

    anthropicCredentialFile = secretFile ''
      The hive's Anthropic credential (an API key, or the token `claude setup-token` prints), handed to every
      agent. Unset, agents wait as needs-login. After changing the file, restart `hyperhive-spawner`.
    '';

    defaultModel = mkOption {
      type = types.nullOr types.str;
      default = null;
      example = "claude-opus-4-1";
      description = "The model of agents whose agent.nix names none (unset: the agent options' default).";
    };

    agents = {
      cpuQuota = mkOption {
        type = types.strMatching "[1-9][0-9]*%";
        default = "200%";
        description = "CPUQuota of each agent's container (100% is one CPU).";
      };
      memoryMax = mkOption {
        type = types.strMatching "[1-9][0-9]*[KMGT]?";
        default = "4G";
        description = "MemoryMax of each agent's container.";
      };
      nice = mkOption {
        type = types.ints.between 0 19;
        default = 10;
        description = ''
          How far below the host's services agents run on the CPU, as a nice value: machine.slice, where every
          container runs, gets the CPUWeight of that share against system.slice, where the services run (nice 10
          is CPUWeight 11 against 100), so that NATS, the broker and the spawner keep answering while many agents
          start or run their turns. Agents still get all the CPU the services leave.
        '';
      };
      externalInterface = mkOption {
        type = types.nullOr types.str;
        default = null;
        example = "eth0";
        description = ''
          The interface to the internet, through which containers reach the Anthropic API (NAT). Unset, the
          containers reach nothing beyond the host's NATS, and agents cannot work.
        '';
      };
      containerFlake = mkOption {
        type = types.str;
        description = ''
          The flake whose `nixosModules.container` every agent's container is built from, as a locked reference
          (a store path): the rendered per-agent flake takes its nixpkgs from it, so no registry is asked at spawn
          time.
        '';
      };
    };

    nixLib = mkOption {
      type = types.path;
      default = "${pkgs.path}/lib";
      defaultText = literalExpression "\"\${pkgs.path}/lib\"";
      description = "nixpkgs' lib, whose module system the spawner evaluates every agent.nix with.";
    };
  };

  config = mkIf cfg.enable {
    assertions =
      map (o: {
        assertion = cfg.${o} == null || !lib.hasPrefix builtins.storeDir (toString cfg.${o});
        message = "services.hyperhive.${o} is in the Nix store, which every local user can read; give a path outside it.";
      }) [ "operatorPasswordFile" "anthropicCredentialFile" ]
      ++ [
        {
          assertion = config.networking.nftables.enable;
          message = "services.hyperhive writes the containers' firewall in nftables: set networking.nftables.enable = true.";
        }
      ];

    users.groups = lib.genAttrs (map (u: "hyperhive-${u}") users) (_: { });
    users.users = lib.genAttrs (map (u: "hyperhive-${u}") users) (name: {
      isSystemUser = true;
      group = name;
      description = "hyperhive ${lib.removePrefix "hyperhive-" name}";
    });

    systemd.tmpfiles.rules = [
      "d ${cfg.stateDir} 0711 root root - -"
      # The server reads its configuration and auth.conf through the group; the seeds in it stay root's (0700).
      "d ${natsDir} 0750 root hyperhive-nats - -"
      "d ${natsDir}/jetstream 0700 hyperhive-nats hyperhive-nats - -"
      "d ${cfg.stateDir}/dashboard 0700 hyperhive-dashboard hyperhive-dashboard - -"
      # What nixos-container writes, made before the spawner's unit makes it writable (a missing path fails it).
      "d /etc/nixos-containers 0755 root root - -"
      "d /nix/var/nix/profiles/per-container 0755 root root - -"
      "d /nix/var/nix/gcroots/per-container 0755 root root - -"
      "d /var/lib/nixos-containers 0700 root root - -"
    ];

    services.postgresql = {
      enable = true;
      ensureDatabases = [ database ];
      ensureUsers = [ { name = database; ensureDBOwnership = true; } ];
      # Peer authentication over /run/postgresql: the approver's and the dashboard's OS users are the one role.
      identMap = ''
        hyperhive hyperhive-approver ${database}
        hyperhive hyperhive-dashboard ${database}
      '';
      authentication = lib.mkBefore ''
        local ${database} ${database} peer map=hyperhive
      '';
    };

    # `sudo hivectl …` on the host: as root it finds the hive by <stateDir>/hive.json and the operator's seed beside
    # it (what `hivectl up` leaves for a local hive); only hivectl, not the environment's python, goes on PATH.
    environment.systemPackages = [
      (pkgs.writeShellScriptBin "hivectl" ''
        export HIVE_STATE_DIR=${lib.escapeShellArg cfg.stateDir}
        exec ${cfg.package}/bin/hivectl "$@"
      '')
    ];

    # The spawner runs `nixos-container create --flake`, which builds with the nix-command and flakes features.
    nix.settings.experimental-features = [ "nix-command" "flakes" ];

    networking.nftables.enable = lib.mkDefault true;
    # Containers (each behind its own veth, `ve-<name>` on this side) reach the host's NATS and nothing else on it;
    # beyond the host, DNS, and HTTPS to public addresses (the Anthropic API's addresses change, so the port is what
    # can be named); never another container or a private network.
    networking.firewall.extraInputRules = ''
      iifname "ve-*" tcp dport ${toString cfg.nats.port} accept comment "hyperhive: agents reach NATS"
    '';
    networking.firewall.allowedTCPPorts = lib.optional cfg.dashboard.openFirewall cfg.dashboard.port;
    networking.nftables.tables.hyperhive = {
      family = "inet";
      content = ''
        chain input {
          type filter hook input priority filter - 1; policy accept;
          iifname "ve-*" ct state established,related accept
          iifname "ve-*" tcp dport ${toString cfg.nats.port} accept
          iifname "ve-*" drop comment "hyperhive: a container reaches nothing else on the host"
        }
        chain forward {
          type filter hook forward priority filter - 1; policy accept;
          oifname "ve-*" ct state established,related accept
          iifname "ve-*" oifname "ve-*" drop comment "hyperhive: no container reaches another"
          iifname "ve-*" meta l4proto { tcp, udp } th dport 53 accept comment "hyperhive: DNS"
          iifname "ve-*" ip daddr { 10.0.0.0/8, 100.64.0.0/10, 169.254.0.0/16, 172.16.0.0/12, 192.168.0.0/16 } drop comment "hyperhive: the API is not on a private network"
          iifname "ve-*" tcp dport 443 accept comment "hyperhive: the Anthropic API"
          iifname "ve-*" drop
          oifname "ve-*" drop
        }
      '';
    };
    networking.nat = mkIf (cfg.agents.externalInterface != null) {
      enable = true;
      internalInterfaces = [ "ve-+" ];
      externalInterface = cfg.agents.externalInterface;
    };

    # nixos-container runs every container in machine.slice, and the hive's services run in system.slice: the two
    # slices' weights decide who gets the CPU when both want it. 100 / 1.25^nice, the kernel's step between nice
    # values (systemd's default weight, 100, is nice 0).
    systemd.slices.machine.sliceConfig.CPUWeight =
      builtins.elemAt [ 100 80 64 51 41 33 26 21 17 13 11 9 7 5 4 4 3 2 2 1 ] cfg.agents.nice;

    systemd.services = {
      # The identities and nats.conf live in the state dir, not the store: the spawner rewrites auth.conf for every
      # agent, and nats-server includes it relative to its own config file (services.nats's JSON config cannot).
      hyperhive-setup = {
        description = "hyperhive: NATS identities and configuration";
        wantedBy = [ "multi-user.target" ];
        before = [ "hyperhive-nats.service" ];
        after = [ "systemd-tmpfiles-setup.service" ];
        serviceConfig = hardening // {
          Type = "oneshot";
          RemainAfterExit = true;
          ExecStart = lib.escapeShellArgs ([
            python "-I" "-m" "hive_spawner.nixos_setup"
            "--nats-dir" natsDir "--host" cfg.nats.listenAddress "--port" (toString cfg.nats.port)
            "--pid-file" "/run/hyperhive-nats/nats.pid" "--state-dir" cfg.stateDir "--nats-url" natsUrl
          ] ++ lib.optionals (cfg.operatorPasswordFile != null) [
            "--operator-password-file" "%d/operator-password"
          ]);
          LoadCredential = lib.optional (cfg.operatorPasswordFile != null) "operator-password:${cfg.operatorPasswordFile}";
          # Root, to write root's seeds and hand the password hash to the dashboard's user; nothing else.
          PrivateUsers = false;
          CapabilityBoundingSet = [ "CAP_CHOWN" "CAP_FOWNER" "CAP_DAC_OVERRIDE" ];
          SystemCallFilter = [ "@system-service" "~@resources" ];
          PrivateNetwork = true;
          RestrictAddressFamilies = [ "AF_UNIX" ];
          ReadWritePaths = [ cfg.stateDir ];
        };
      };

      # Our own nats-server unit (as nixpkgs' nats.nix does it: LimitNOFILE, reload by HUP).
      hyperhive-nats = {
        description = "hyperhive: nats-server";
        wantedBy = [ "multi-user.target" ];
        after = [ "network.target" "hyperhive-setup.service" ];
        requires = [ "hyperhive-setup.service" ];
        serviceConfig = hardening // {
          Type = "simple";
          User = "hyperhive-nats";
          Group = "hyperhive-nats";
          ExecStart = "${pkgs.nats-server}/bin/nats-server -c ${natsDir}/nats.conf";
          ExecReload = "${pkgs.coreutils}/bin/kill -HUP $MAINPID";
          RuntimeDirectory = "hyperhive-nats";
          ReadWritePaths = [ "${natsDir}/jetstream" ];
          LimitNOFILE = 800000;
          Restart = "on-failure";
          RestartSec = "2s";
        };
      };

      hyperhive-broker = hiveService "broker" { description = "hyperhive: broker"; };

      hyperhive-approver = hiveService "approver" {
        description = "hyperhive: approver";
        after = [ "postgresql.service" "postgresql-setup.service" ];
        requires = [ "postgresql.service" ];
        environment.HIVE_DATABASE_URL = databaseUrl;
      };

      hyperhive-dashboard = hiveService "dashboard" {
        description = "hyperhive: dashboard";
        after = [ "postgresql.service" "postgresql-setup.service" ];
        requires = [ "postgresql.service" ];
        environment = {
          HIVE_DATABASE_URL = databaseUrl;
          HIVE_DASHBOARD_HOST = cfg.dashboard.listenAddress;
          HIVE_DASHBOARD_PORT = toString cfg.dashboard.port;
        };
        serviceConfig.ReadWritePaths = [ "${cfg.stateDir}/dashboard" ];
      };

      # The exception (its exposure threshold in tests/deploy/test_units.py says why): nixos-container writes
      # /etc/nixos-containers, /nix/var/nix/{profiles,gcroots}/per-container and /var/lib/nixos-containers, asks
      # systemd to start container@<name>.service, sets their limits and reads their journals; it also chowns each
      # agent's state dir to the agent's uid range. So it is root, with a bounding set trimmed to what that needs
      # (unverified on a NixOS host: docs/nixos.md), no new privileges, and every other path read-only.
      hyperhive-spawner = hiveService "spawner" {
        description = "hyperhive: spawner";
        after = [ "nix-daemon.socket" ];
        # nixos-container, systemctl and journalctl, nix (evaluation and builds, through the daemon), and git under
        # prlimit (util-linux) for the config repos.
        path = [ pkgs.nixos-container pkgs.systemd pkgs.nix pkgs.git pkgs.util-linux ];
        environment = {
          HIVE_BACKEND = "nixos";
          HIVE_NATS_AUTH_DIR = natsDir;
          HIVE_CPU_QUOTA = cfg.agents.cpuQuota;
          HIVE_MEMORY_MAX = cfg.agents.memoryMax;
          HIVE_NIX_LIB = toString cfg.nixLib;
          HIVE_NIXOS_FLAKE = cfg.agents.containerFlake;
          HIVE_BOOTSTRAP_MANAGER = "true";
          NIX_REMOTE = "daemon";
          # nix keeps its fetcher and evaluation caches under XDG_CACHE_HOME; root's home is out of reach here.
          XDG_CACHE_HOME = "/var/cache/hyperhive-spawner";
        } // lib.optionalAttrs (cfg.defaultModel != null) { HIVE_DEFAULT_MODEL = cfg.defaultModel; }
          // lib.optionalAttrs (cfg.anthropicCredentialFile != null) { HIVE_CREDENTIAL_FILE = "%d/anthropic"; };
        serviceConfig = {
          User = "root";
          Group = "root";
          LoadCredential = [ "nats.nk:${natsDir}/seeds/spawner.nk" ]
            ++ lib.optional (cfg.anthropicCredentialFile != null) "anthropic:${cfg.anthropicCredentialFile}";
          PrivateUsers = false;
          # CAP_LINUX_IMMUTABLE: `nixos-container destroy` clears the immutable bit of the container's /var/empty.
          CapabilityBoundingSet = [
            "CAP_CHOWN" "CAP_DAC_OVERRIDE" "CAP_DAC_READ_SEARCH" "CAP_FOWNER" "CAP_KILL" "CAP_LINUX_IMMUTABLE"
          ];
          SystemCallFilter = [ "@system-service" "~@resources" ];
          ProtectControlGroups = false; # systemctl set-property writes the containers' cgroup limits
          ReadWritePaths = [
            cfg.stateDir
            "/etc/nixos-containers"
            "/nix/var/nix/profiles/per-container"
            "/nix/var/nix/gcroots/per-container"
            "/var/lib/nixos-containers"
          ];
          CacheDirectory = "hyperhive-spawner";
          # Containers are units of their own: stopping the spawner ends only its journal watchers.
          KillMode = "mixed";
        };
      };
    };
  };
}
