"""The operator's password: an argon2 hash in a 0600 file under the state dir, the one thing `hivectl passwd`
changes (`set_password`). A session remembers which hash it was opened under (`Passwords.current_id`), so writing a
new hash ends every session, whoever writes it.

At a hive's first start there is no hash: `ensure_password` makes a random password, stores its hash, and leaves
the plain password in `<state>/dashboard/initial-password` (0600) for `hivectl up` to print; it stays there until
the password is changed, so an operator who missed it can still read it, and only they (or root) can.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from hyperhive.files import write_secret

ACCOUNT = "operator"
"""The one operator account; sessions and the audit log name it, so a second account needs no schema change."""
MIN_LENGTH = 12
MAX_LENGTH = 1024

_hasher = PasswordHasher()


class PasswordError(ValueError):
    """A password that cannot be set; the message says why."""


def folder(state_dir: Path) -> Path:
    return state_dir / "dashboard"


def hash_file(state_dir: Path) -> Path:
    """The argon2 hash of the operator's password (0600)."""
    return folder(state_dir) / "password.argon2"


def initial_password_file(state_dir: Path) -> Path:
    """The generated first password, in plain text (0600), until the operator sets one of their own."""
    return folder(state_dir) / "initial-password"


def initial_password(state_dir: Path) -> str | None:
    """The generated first password while it is still the password (for `hivectl up` to print); None once the
    operator has set one of their own."""
    try:
        return initial_password_file(state_dir).read_text().strip() or None
    except FileNotFoundError:
        return None


def check_password(plain: str) -> str:
    if len(plain) < MIN_LENGTH:
        raise PasswordError(f"The password is {len(plain)} characters long; use at least {MIN_LENGTH}.")
    if len(plain) > MAX_LENGTH:
        raise PasswordError(f"The password is longer than {MAX_LENGTH} characters.")
    if "\x00" in plain:
        raise PasswordError("The password may not contain a NUL character.")
    return plain


def _make_folder(state_dir: Path) -> None:
    folder(state_dir).mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder(state_dir), 0o700)


def set_password(state_dir: Path, plain: str) -> None:
    """Store `plain` as the operator's password (what `hivectl passwd` calls). Every session opened before ends at
    its next request; the generated first password, if still there, is removed."""
    check_password(plain)
    _make_folder(state_dir)
    write_secret(hash_file(state_dir), _hasher.hash(plain).encode())
    initial_password_file(state_dir).unlink(missing_ok=True)


def ensure_password(state_dir: Path) -> bool:
    """Make a first password when there is none; True when one was made (its plain text is in
    `initial_password_file`, never in a log)."""
    if hash_file(state_dir).exists():
        return False
    plain = secrets.token_urlsafe(18)
    _make_folder(state_dir)
    write_secret(initial_password_file(state_dir), plain.encode() + b"\n")
    write_secret(hash_file(state_dir), _hasher.hash(plain).encode())
    return True


@dataclass(frozen=True)
class _Hash:
    stamp: tuple[int, int, int]
    text: str

    @property
    def id(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]


class Passwords:
    """The current hash, read again whenever its file changes (a `hivectl passwd` while the dashboard runs)."""

    def __init__(self, state_dir: Path) -> None:
        self.path = hash_file(state_dir)
        self._cached: _Hash | None = None

    def _current(self) -> _Hash:
        st = self.path.stat()
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        if self._cached is None or self._cached.stamp != stamp:
            self._cached = _Hash(stamp, self.path.read_text().strip())
        return self._cached

    def current_id(self) -> str:
        """Which password is in force: sessions opened under another one are over."""
        return self._current().id

    def verify(self, plain: str) -> bool:
        """True when `plain` is the password (argon2's check: slow on purpose, so call it off the event loop)."""
        try:
            return bool(_hasher.verify(self._current().text, plain))
        except (VerificationError, InvalidHashError):
            return False
