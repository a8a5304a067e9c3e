# The harness's start in an agent's container (container.nix makes it hyperhive-harness.service's ExecStart, with
# the @…@ names replaced by store paths). The spawner's environment for the harness and the agent's NATS seed are
# credentials (nspawn's --load-credential, then the unit's LoadCredential=), never files a flake reads.
set -eu

# harness.env is written by the spawner (hive_spawner.nixos: names checked, values double-quoted with \ " ` $
# escaped), so sourcing it sets each variable to exactly its value and runs nothing.
set -a
. "$CREDENTIALS_DIRECTORY/harness.env"
set +a
if [ -s "$CREDENTIALS_DIRECTORY/nats.nk" ]; then
  export HIVE_NATS_CREDS="$CREDENTIALS_DIRECTORY/nats.nk"
fi

# NATS listens on the host, which this container reaches at the host side of its veth: the default gateway
# nixos-container routes through (its HOST_ADDRESS). The spawner's URL names its own loopback; keep its port.
gateway=$(@ip@ -4 route show default | @awk@ '{ print $3; exit }')
if [ -z "$gateway" ]; then
  echo "hyperhive-harness: no default route to the host, so no way to NATS" >&2
  exit 1
fi
export HIVE_NATS_URL="nats://$gateway:${HIVE_NATS_URL##*:}"

exec @python@ -I -m hive_harness
