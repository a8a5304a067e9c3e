"""What a NixOS host does before its nats-server starts, as `hivectl up` does for a local hive: the hive's NATS
users and the server's configuration, written into the state dir (the spawner rewrites `auth.conf` later, and
nats-server includes it relative to its config file, so neither can be a store file); `hive.json` (where the hive
listens, as `hivectl up` writes it), so root's `hivectl` on the host finds the hive and the operator's seed by
itself; and the operator's first password. The hyperhive NixOS module runs it as root in `hyperhive-setup.service`;
the streams and the database schema need nothing of it (every service declares the streams it joins, and migrates
its own tables).

`python -I -m hive_spawner.nixos_setup --nats-dir … --host … --port … --pid-file …`; the seeds it makes never leave
the state dir (services get theirs as systemd credentials)."""

from __future__ import annotations

import argparse
import json
import os
import pwd
import sys
from pathlib import Path

from hyperhive import identity
from hyperhive.files import write_atomic
from hyperhive.identity import Identities


def write_identities(nats_dir: Path, *, host: str, port: int, pid_file: Path) -> Path:
    """The host principals' seeds (kept across runs), `auth.conf` and `nats.conf` in `nats_dir`; returns the
    config file. JetStream's store is `nats_dir/jetstream` (the module makes it the server's own)."""
    identities = Identities(nats_dir)
    identities.ensure_host()
    config = nats_dir / "nats.conf"
    text = identity.server_config(identities, host=host, port=port, store_dir=nats_dir / "jetstream", pid_file=pid_file)
    config.write_text(text)
    config.chmod(0o644)  # no secret in it; the server's user reads it through the folder's group
    return config


def write_hive_file(state_dir: Path, nats_url: str) -> Path:
    """What hivectl reads to find a running hive (`hivectl.layout.Layout.hive_file`); no secret in it."""
    hive_file = state_dir / "hive.json"
    write_atomic(hive_file, json.dumps({"nats_url": nats_url}) + "\n")
    return hive_file


def set_first_password(state_dir: Path, password_file: Path, owner: str) -> bool:
    """The operator's password from `password_file`, when the dashboard has none yet (a password changed later
    with the dashboard stays); the hash file is then the dashboard user's. True when it was set."""
    from hive_dashboard import password  # noqa: PLC0415 - only the host that runs the dashboard has it

    if password.hash_file(state_dir).exists():
        return False
    password.set_password(state_dir, password_file.read_text().strip())
    user = pwd.getpwnam(owner)
    for path in (password.folder(state_dir), password.hash_file(state_dir)):
        os.chown(path, user.pw_uid, user.pw_gid)
    return True


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m hive_spawner.nixos_setup")
    parser.add_argument("--nats-dir", type=Path, required=True)
    parser.add_argument("--host", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid-file", type=Path, required=True)
    parser.add_argument("--state-dir", type=Path, help="the hive's state dir (for hive.json and the password)")
    parser.add_argument("--nats-url", help="where host processes reach the server, written to hive.json")
    parser.add_argument("--operator-password-file", type=Path)
    parser.add_argument("--dashboard-user", default="hyperhive-dashboard")
    args = parser.parse_args(argv)
    config = write_identities(args.nats_dir, host=args.host, port=args.port, pid_file=args.pid_file)
    print(f"event=identities config={config}", file=sys.stderr)
    if (args.operator_password_file is not None or args.nats_url is not None) and args.state_dir is None:
        parser.error("--operator-password-file and --nats-url need --state-dir")
    if args.nats_url is not None:
        print(f"event=hive_file file={write_hive_file(args.state_dir, args.nats_url)}", file=sys.stderr)
    if args.operator_password_file is not None:
        made = set_first_password(args.state_dir, args.operator_password_file, args.dashboard_user)
        print(f"event=operator_password outcome={'set' if made else 'kept'}", file=sys.stderr)


if __name__ == "__main__":
    main()
