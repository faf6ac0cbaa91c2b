"""Password hashing, the users file store, and the ban list (injected clock)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ftp_gateway.bans import BanList
from ftp_gateway.errors import UsersFileError
from ftp_gateway.users import (
    User,
    UsersStore,
    editing,
    hash_password,
    read_users,
    verify_password,
)


def test_hash_is_salted_and_verifies() -> None:
    first, second = hash_password("pw"), hash_password("pw")
    assert first != second and first.startswith("scrypt$")
    assert verify_password("pw", first) and verify_password("pw", second)
    assert not verify_password("PW", first)


@pytest.mark.parametrize(
    "stored", ["", "plain", "md5$x$y", "scrypt$1$2$3$@@@$###", "scrypt$a$b$c$d$e"]
)
def test_malformed_hashes_fail_closed(stored: str) -> None:
    assert not verify_password("pw", stored)


def test_store_rereads_on_change_and_keeps_last_good(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    store = UsersStore(path)
    assert store.get("a") is None
    with editing(path) as users:
        users["a"] = User("a", tmp_path, hash_password("x"))
    assert store.get("a") is not None
    with editing(path) as users:
        del users["a"]
        users["b"] = User("b", tmp_path, hash_password("y"))
    assert store.get("a") is None and store.get("b") is not None
    path.write_text("{broken")
    assert store.get("b") is not None and store.last_error is not None


def test_read_users_reports_bad_files(tmp_path: Path) -> None:
    path = tmp_path / "users.json"
    path.write_text('{"users": {"x": {"site": "/"}}}')
    with pytest.raises(UsersFileError, match="needs 'site' and 'hash'"):
        read_users(path)
    path.write_text("[]")
    with pytest.raises(UsersFileError):
        read_users(path)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_ban_after_n_failures_within_window_then_expires() -> None:
    clock = Clock()
    bans = BanList(failures=3, window=60, duration=300, clock=clock)
    assert not bans.record_failure("1.2.3.4")
    clock.now += 30
    assert not bans.record_failure("1.2.3.4")
    assert bans.remaining("1.2.3.4") == 0
    assert bans.record_failure("1.2.3.4")
    assert bans.remaining("1.2.3.4") == 300
    assert bans.remaining("5.6.7.8") == 0
    clock.now += 299
    assert bans.remaining("1.2.3.4") == 1
    clock.now += 1
    assert bans.remaining("1.2.3.4") == 0


def test_failures_outside_the_window_do_not_count() -> None:
    clock = Clock()
    bans = BanList(failures=2, window=10, duration=5, clock=clock)
    bans.record_failure("ip")
    clock.now += 11
    assert not bans.record_failure("ip")
    clock.now += 1
    assert bans.record_failure("ip")


def test_ban_disabled_with_zero_failures() -> None:
    bans = BanList(failures=0, window=10, duration=5, clock=Clock())
    assert not any(bans.record_failure("ip") for _ in range(100))
