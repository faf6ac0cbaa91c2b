"""The virtual users file: salted scrypt hashes, atomic edits, reload on change.

Format (JSON, mode 0600)::

    {"version": 1,
     "users": {"alice": {"site": "/srv/sites/alice",
                         "hash": "scrypt$16384$8$1$<salt b64>$<key b64>",
                         "perm": "elrdfmwMT"}}}

The plain password is never stored or logged. The gateway re-reads the file whenever its
stat signature changes, so `user add/passwd/del` take effect without a restart.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UsersFileError

# scrypt cost: 16 MiB of memory and some tens of milliseconds per check, which is what
# makes an offline guess expensive; login is rare enough to afford it.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
KEY_LEN = 32

# pyftpdlib letters: e l r (read side), a d f m w M T (write side). "a" is granted so that
# APPE reaches the handler, which refuses it with an explanation (see handler.py).
DEFAULT_PERM = "elradfmwMT"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return "$".join(
        ["scrypt", str(SCRYPT_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(key)]
    )


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check; malformed stored values simply fail."""
    try:
        scheme, n, r, p, salt, key = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(key)
        actual = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(actual, expected)


@functools.cache
def _dummy_hash() -> str:
    return hash_password(secrets.token_hex(8))


def burn_time_like_a_check(password: str) -> None:
    """Spend a real check's time on an unknown user, so names cannot be probed by timing."""
    verify_password(password, _dummy_hash())


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=KEY_LEN,
        maxmem=256 * 1024 * 1024,
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


@dataclass(frozen=True)
class User:
    name: str
    site: Path
    hash: str
    perm: str = DEFAULT_PERM


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise UsersFileError(
            f"invalid user name {name!r}: use letters, digits and . _ @ - (max 64)"
        )


def parse_users(data: Any, origin: Path) -> dict[str, User]:
    if not isinstance(data, dict) or not isinstance(data.get("users"), dict):
        raise UsersFileError(f"{origin}: expected an object with a 'users' object")
    users: dict[str, User] = {}
    for name, entry in data["users"].items():
        if not isinstance(entry, dict) or not {"site", "hash"} <= entry.keys():
            raise UsersFileError(f"{origin}: user {name!r} needs 'site' and 'hash'")
        users[name] = User(
            name=name, site=Path(entry["site"]), hash=str(entry["hash"]),
            perm=str(entry.get("perm", DEFAULT_PERM)),
        )
    return users


def dump_users(users: dict[str, User]) -> str:
    body = {
        name: {"site": str(u.site), "hash": u.hash, "perm": u.perm}
        for name, u in sorted(users.items())
    }
    return json.dumps({"version": 1, "users": body}, indent=2) + "\n"


def read_users(path: Path) -> dict[str, User]:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as err:
        raise UsersFileError(f"cannot read {path}: {err.strerror}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise UsersFileError(f"{path}: not valid JSON ({err.msg}, line {err.lineno})") from None
    return parse_users(data, path)


def write_users(path: Path, users: dict[str, User]) -> None:
    """Replace the file atomically, so the gateway never reads half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, dump_users(users).encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


@contextlib.contextmanager
def editing(path: Path) -> Iterator[dict[str, User]]:
    """Read-modify-write under a lock, so two concurrent CLI edits do not lose one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    lock_fd = os.open(path.with_name(f".{path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX)
        users = read_users(path)
        yield users
        write_users(path, users)
    finally:
        os.close(lock_fd)


class UsersStore:
    """The users file as the gateway sees it: re-read whenever its stat signature changes.

    A file that became unreadable or malformed keeps the last good table (and logs once
    through the caller), rather than locking everybody out.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._signature: tuple[int, ...] | None = None
        self._users: dict[str, User] = {}
        self.last_error: str | None = None

    def reload(self) -> str | None:
        """Read the file now, whatever its stat signature says; the error, if it failed
        (the last good table stays)."""
        with self._lock:
            self._reload(self._stat_signature())
            return self.last_error

    def get(self, name: str) -> User | None:
        return self.snapshot().get(name)

    def snapshot(self) -> dict[str, User]:
        with self._lock:
            signature = self._stat_signature()
            if signature != self._signature:
                self._reload(signature)
            return self._users

    def _stat_signature(self) -> tuple[int, ...] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def _reload(self, signature: tuple[int, ...] | None) -> None:
        try:
            self._users = read_users(self.path)
        except UsersFileError as err:
            self.last_error = str(err)
            return  # keep the last good table; read again at the next lookup
        self.last_error = None
        self._signature = signature
