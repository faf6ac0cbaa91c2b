"""`user add/passwd/del/list` through the CLI, picked up by a running gateway."""

from __future__ import annotations

import ftplib
import io
import json
from pathlib import Path

import pytest
from ftp_harness import Gateway, run_cli

pytestmark = pytest.mark.integration


def can_login(gateway: Gateway, user: str, password: str) -> bool:
    client = gateway.ftp(login=False)
    try:
        client.login(user, password)
    except ftplib.error_perm:
        return False
    finally:
        client.close()
    return True


def test_users_file_changes_apply_without_restart(gateway: Gateway, tmp_path: Path) -> None:
    users = str(gateway.users)
    bob_site = tmp_path / "bob-site"
    bob_site.mkdir()
    assert not can_login(gateway, "bob", "bob pw 1")
    run_cli("user", "add", "bob", "--site", str(bob_site), "--users", users, stdin="bob pw 1\n")
    assert can_login(gateway, "bob", "bob pw 1")
    client = gateway.ftp(user="bob", password="bob pw 1")
    client.storbinary("STOR mine.txt", io.BytesIO(b"bob"))
    client.quit()
    assert (bob_site / "mine.txt").read_bytes() == b"bob"
    assert not (gateway.site / "mine.txt").exists()

    run_cli("user", "passwd", "bob", "--users", users, stdin="bob pw 2\n")
    assert not can_login(gateway, "bob", "bob pw 1")
    assert can_login(gateway, "bob", "bob pw 2")

    listed = run_cli("user", "list", "--users", users).stdout
    assert "alice\t" in listed and f"bob\t{bob_site}" in listed

    run_cli("user", "del", "bob", "--users", users)
    assert not can_login(gateway, "bob", "bob pw 2")
    assert can_login(gateway, gateway.user, gateway.password)


def test_passwords_on_disk_are_salted_hashes(gateway: Gateway, tmp_path: Path) -> None:
    users = str(gateway.users)
    site = tmp_path / "s2"
    site.mkdir()
    run_cli("user", "add", "carol", "--site", str(site), "--users", users,
            stdin=gateway.password + "\n")
    text = gateway.users.read_text()
    assert gateway.password not in text
    table = json.loads(text)["users"]
    assert table["alice"]["hash"].startswith("scrypt$")
    assert table["alice"]["hash"] != table["carol"]["hash"]  # same password, other salt
    assert gateway.users.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize("args, stdin, message", [
    (["user", "add", "dave", "--site", "/nonexistent/site"], "pw\n", "site directory not found"),
    (["user", "add", "bad name!", "--site", "."], "pw\n", "invalid user name"),
    (["user", "add", "erin", "--site", "."], "\n", "empty password"),
    (["user", "passwd", "nobody"], "pw\n", "no such user"),
    (["user", "del", "nobody"], "", "no such user"),
])
def test_cli_errors_are_one_line(tmp_path: Path, args: list[str], stdin: str, message: str) -> None:
    proc = run_cli(*args, "--users", str(tmp_path / "users.json"), stdin=stdin, check=False)
    assert proc.returncode == 2
    assert message in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_cli_rejects_a_corrupt_users_file(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text("{not json")
    proc = run_cli("user", "list", "--users", str(users), check=False)
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("flags, message", [
    (["--listen", "nonsense"], "HOST:PORT"),
    (["--passive-ports", "9-3"], "passive port range"),
    (["--masquerade", "not-an-ip"], "masquerade"),
    (["--tls-cert", "/nonexistent.pem"], "TLS file not found"),
])
def test_ftp_bad_config_is_one_line(tmp_path: Path, flags: list[str], message: str) -> None:
    proc = run_cli("ftp", "--users", str(tmp_path / "users.json"), *flags, check=False)
    assert proc.returncode == 2 and message in proc.stderr
    assert "Traceback" not in proc.stderr
