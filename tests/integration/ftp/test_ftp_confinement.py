"""Nothing outside the home is reachable or listable; the state dir is invisible; logs/
is read-only; SITE CHMOD cannot set special bits."""

from __future__ import annotations

import ftplib
import io
import os
import stat
from pathlib import Path
from typing import Callable

import pytest
from ftp_harness import Gateway, store

pytestmark = pytest.mark.integration


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    secret = tmp_path / "outside"
    secret.mkdir()
    (secret / "secret.txt").write_text("TOP SECRET\n")
    return secret


def listing(client: ftplib.FTP, path: str = "") -> str:
    lines: list[str] = []
    client.retrlines(f"LIST {path}".strip(), lines.append)
    return "\n".join(lines)


def mlsd_names(client: ftplib.FTP, path: str = "") -> set[str]:
    return {name for name, _facts in client.mlsd(path)}


def refused(client: ftplib.FTP, command: str) -> str:
    with pytest.raises(ftplib.error_perm) as info:
        client.sendcmd(command)
    return str(info.value)


@pytest.mark.parametrize("path", [
    "../outside/secret.txt", "../../../../../../etc/passwd", "/etc/passwd",
    "/../outside/secret.txt", "cgi-bin/../../outside/secret.txt", "a" * 1000, "a" * 5000,
])
def test_traversal_vectors_do_not_leave_home(gateway: Gateway, outside: Path, path: str) -> None:
    client = gateway.ftp()
    with pytest.raises(ftplib.error_perm):
        client.retrbinary(f"RETR {path}", lambda data: None)
    with pytest.raises(ftplib.error_perm):
        client.storbinary(f"STOR {path}", io.BytesIO(b"pwned"))
    client.cwd("/cgi-bin")
    client.cwd("../../..")  # clamps at the home, like a chroot
    assert client.pwd() == "/"
    client.quit()
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"
    assert not list(outside.parent.glob("**/pwned"))


def test_encoded_names_are_literal_names_inside_home(gateway: Gateway, outside: Path) -> None:
    client = gateway.ftp()
    store(client, "..%2foutside%2fsecret.txt", b"literal")
    client.quit()
    assert (gateway.site / "..%2foutside%2fsecret.txt").read_bytes() == b"literal"
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"


def test_nul_bytes_are_refused_and_session_survives(gateway: Gateway) -> None:
    client = gateway.ftp()
    assert refused(client, "RETR cgi-bin/hello.py\x00.txt").startswith("501")
    assert client.sendcmd("NOOP").startswith("200")
    client.quit()


def test_symlinks_leading_out_are_invisible_and_unusable(gateway: Gateway, outside: Path) -> None:
    os.symlink(outside, gateway.site / "htdocs" / "escape")
    os.symlink(outside / "secret.txt", gateway.site / "htdocs" / "leak.txt")
    os.symlink(gateway.site / ".cgirt", gateway.site / "htdocs" / "state")
    os.symlink(gateway.site / "cgi-bin" / "hello.py", gateway.site / "htdocs" / "inside.py")
    client = gateway.ftp()
    text = listing(client, "htdocs")
    assert str(outside) not in text and "->" not in text
    assert "escape" not in text and "leak.txt" not in text and "state" not in text
    assert "inside.py" in text  # a link that stays inside is fine
    assert mlsd_names(client, "htdocs") == {"inside.py"}
    for command in ("RETR htdocs/leak.txt", "RETR htdocs/escape/secret.txt",
                    "RETR htdocs/state/generation", "CWD htdocs/escape", "CWD htdocs/state",
                    "SIZE htdocs/leak.txt", "DELE htdocs/escape/secret.txt",
                    "SITE CHMOD 777 htdocs/leak.txt", "MKD htdocs/escape/new"):
        assert refused(client, command).startswith("550"), command
    with pytest.raises(ftplib.error_perm):
        client.storbinary("STOR htdocs/escape/new.txt", io.BytesIO(b"x"))
    client.quit()
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert stat.S_IMODE((outside / "secret.txt").stat().st_mode) != 0o777


def test_state_dir_is_invisible_and_unwritable(gateway: Gateway) -> None:
    client = gateway.ftp()
    assert ".cgirt" not in client.nlst()
    assert ".cgirt" not in listing(client, "-a") and ".cgirt" not in mlsd_names(client)
    for command in ("CWD .cgirt", "CWD /.cgirt/logs", "RETR .cgirt/generation",
                    "SIZE .cgirt/generation",
                    "DELE .cgirt/generation", "RMD .cgirt/staging", "MKD .cgirt/x", "RNFR .cgirt",
                    "MLST .cgirt", "SITE CHMOD 777 .cgirt"):
        reply = refused(client, command)
        assert reply.startswith(("550", "501")), (command, reply)
    with pytest.raises(ftplib.error_perm):
        client.storbinary("STOR .cgirt/generation", io.BytesIO(b"999"))
    with pytest.raises(ftplib.error_perm):
        store(client, "cgi-bin/../.cgirt/staging/x", b"x")
    client.rename("cgi-bin/hello.py", "cgi-bin/moved.py")
    client.sendcmd("RNFR cgi-bin/moved.py")
    assert refused(client, "RNTO .cgirt/stolen.py").startswith("550")
    client.quit()
    assert not (gateway.site / ".cgirt" / "stolen.py").exists()
    assert (gateway.site / ".cgirt" / "generation").read_text().strip() != "999"


def test_logs_folder_is_read_only(gateway: Gateway) -> None:
    (gateway.site / ".cgirt" / "logs").mkdir(parents=True, exist_ok=True)
    (gateway.site / ".cgirt" / "logs" / "error.log").write_text("Traceback: boom\n")
    (gateway.site / ".cgirt" / "logs" / "other.txt").write_text("private\n")
    client = gateway.ftp()
    store(client, "htdocs/a.txt", b"a")  # produces a deploy.log entry
    assert "logs" in client.nlst()
    assert sorted(client.nlst("logs")) == ["logs/deploy.log", "logs/error.log"] or \
        sorted(client.nlst("logs")) == ["deploy.log", "error.log"]
    chunks: list[bytes] = []
    client.retrbinary("RETR logs/error.log", chunks.append)
    assert b"".join(chunks) == b"Traceback: boom\n"
    for command in ("DELE logs/error.log", "MKD logs/x", "RMD logs",
                    "SITE CHMOD 777 logs/error.log",
                    "RETR logs/other.txt", "DELE logs"):
        assert refused(client, command).startswith("550"), command
    client.sendcmd("RNFR logs/error.log")
    assert refused(client, "RNTO htdocs/error.log").startswith("550")
    with pytest.raises(ftplib.error_perm, match="read-only"):
        store(client, "logs/error.log", b"overwritten")
    client.quit()
    assert (gateway.site / ".cgirt" / "logs" / "error.log").read_text() == "Traceback: boom\n"


def test_site_chmod_masks_special_bits(gateway: Gateway) -> None:
    client = gateway.ftp()
    reply = client.sendcmd("SITE CHMOD 6777 cgi-bin/hello.py")
    assert reply.startswith("200") and "ignored" in reply
    mode = (gateway.site / "cgi-bin" / "hello.py").stat().st_mode
    assert stat.S_IMODE(mode) == 0o777
    assert client.sendcmd("SITE CHMOD 4700 cgi-bin/hello.py").startswith("200")
    assert stat.S_IMODE((gateway.site / "cgi-bin" / "hello.py").stat().st_mode) == 0o700
    assert refused(client, "SITE CHMOD 9999 cgi-bin/hello.py").startswith("501")
    client.quit()


def test_wrong_password_and_unknown_user(gateway: Gateway) -> None:
    client = gateway.ftp(login=False)
    with pytest.raises(ftplib.error_perm, match="530"):
        client.login(gateway.user, "wrong")
    client.close()
    client = gateway.ftp(login=False)
    with pytest.raises(ftplib.error_perm, match="530"):
        client.login("mallory", "whatever")
    client.close()
    assert "wrong" not in gateway.log() and "whatever" not in gateway.log()


def test_a_log_the_owner_links_to_a_root_only_file_is_refused(gateway: Gateway,
                                                              outside: Path) -> None:
    # The gateway runs as root; the owner's scripts can plant links in .cgirt/logs.
    secret = outside / "secret.txt"
    os.chmod(secret, 0o600)
    before = os.stat(secret)
    logs = gateway.site / ".cgirt" / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "error.log").unlink(missing_ok=True)
    (logs / "error.log").symlink_to(secret)
    client = gateway.ftp()
    with pytest.raises(ftplib.error_perm, match=r"^550 /logs/error\.log: refused: a symbolic link"):
        client.retrbinary("RETR logs/error.log", lambda data: None)
    assert "error.log" not in mlsd_names(client, "logs")
    store(client, "cgi-bin/new.py", b"print('Content-Type: text/plain\\n')\n")  # deploy.log
    client.quit()
    assert "error.log is a symbolic link: refused" in gateway.log()
    after = os.stat(secret)
    assert secret.read_text() == "TOP SECRET\n"
    assert (after.st_mode, after.st_size, after.st_mtime_ns) == (
        before.st_mode, before.st_size, before.st_mtime_ns)


def _upload_while(client: ftplib.FTP, path: str, data: bytes, swap: Callable[[], None]) -> str:
    """STOR `path`, doing the owner's `swap` once the bytes are sent and before the data
    connection closes (after the gateway's checks, before its publish); the final reply."""
    client.voidcmd("TYPE I")
    conn = client.transfercmd(f"STOR {path}")
    conn.sendall(data)
    swap()
    conn.close()
    try:
        return client.voidresp()
    except ftplib.Error as err:
        return str(err)


def test_a_publish_refused_mid_upload_names_no_server_path(gateway: Gateway,
                                                           outside: Path) -> None:
    site = gateway.site
    (site / "htdocs").mkdir(exist_ok=True)
    (site / "htdocs" / "page.txt").write_bytes(b"old\n")
    client = gateway.ftp()

    def to_outside() -> None:
        (site / "htdocs").rename(site / "htdocs.moved")
        (site / "htdocs").symlink_to(outside)

    reply = _upload_while(client, "htdocs/page.txt", b"new\n", to_outside)
    assert reply.startswith("451 /htdocs/page.txt was not published:"), reply
    assert str(site) not in reply and str(outside) not in reply and "a link leads out of the site" \
        in reply
    logs: list[str] = []
    client.retrlines("RETR logs/deploy.log", logs.append)  # the owner reads it over FTP
    client.quit()
    assert any("failed /htdocs/page.txt" in line for line in logs)
    assert not any(str(site) in line or str(outside) in line for line in logs)
    assert str(outside) in gateway.log()  # the admin's log has it whole
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (site / "htdocs.moved" / "page.txt").read_bytes() == b"old\n"
    assert os.listdir(site / ".cgirt" / "staging") == []


def test_an_upload_into_a_linked_state_folder_names_no_server_path(gateway: Gateway,
                                                                    outside: Path) -> None:
    site = gateway.site
    client = gateway.ftp()
    client.voidcmd("NOOP")  # answered after the login made the state folders
    staging = site / ".cgirt" / "staging"
    staging.rmdir()
    staging.symlink_to(outside)
    with pytest.raises(ftplib.error_perm) as info:
        store(client, "cgi-bin/new.py", b"print()\n")
    client.quit()
    assert str(info.value).startswith("550 /cgi-bin/new.py: refused"), info.value
    assert str(site) not in str(info.value)
    assert "staging is a symbolic link" in gateway.log()
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert not (site / "cgi-bin" / "new.py").exists()
