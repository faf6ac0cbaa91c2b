"""Signals to a live gateway: HUP reloads the users file and the TLS certificate, USR1
reopens the log file (logrotate); neither stops it, and sessions in progress go on."""

from __future__ import annotations

import ftplib
import os
import signal
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from ftp_harness import PASSWORD, Gateway, run_cli, store, wait_until

from ftp_gateway.tls import write_self_signed

pytestmark = pytest.mark.integration

GOOD = b'print("Content-Type: text/plain")\nprint()\nprint("ok")\n'


def serving(gw: Gateway) -> None:
    """The gateway is alive and publishes."""
    assert gw.proc.poll() is None, gw.log()
    client = gw.ftp()
    assert store(client, "cgi-bin/ok.py", GOOD).startswith("226 ")
    client.quit()


def failed_login(gw: Gateway, name: str) -> None:
    client = gw.ftp(login=False)
    with pytest.raises(ftplib.error_perm, match="530"):
        client.login(name, "wrong")
    client.close()


def test_hup_reloads_the_users_file_and_keeps_serving(gateway_factory: Callable[..., Gateway],
                                                       tmp_path: Path) -> None:
    gw = gateway_factory()
    session = gw.ftp()  # in progress across the signal
    run_cli("user", "add", "bob", "--site", str(gw.site), "--users", str(gw.users),
            stdin=PASSWORD + "\n")
    os.kill(gw.proc.pid, signal.SIGHUP)
    wait_until(lambda: "users file" in gw.log() and "read again" in gw.log(), 20, "the reload")
    gw.ftp(user="bob").quit()
    assert store(session, "cgi-bin/during.py", GOOD).startswith("226 ")
    session.quit()
    serving(gw)


def test_hup_with_a_broken_users_file_keeps_the_users(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory()
    good = gw.users.read_text()
    gw.users.write_text("{ not json")
    os.kill(gw.proc.pid, signal.SIGHUP)
    wait_until(lambda: "users file not reloaded" in gw.log(), 20, "the refused reload")
    assert "not valid JSON" in gw.log()
    serving(gw)  # alice still logs in
    gw.users.write_text(good)


def test_a_broken_users_file_is_an_error_at_start(tmp_path: Path) -> None:
    users = tmp_path / "users.json"
    users.write_text("{ not json")
    proc = run_cli("ftp", "--users", str(users), "--listen", "127.0.0.1:0", check=False)
    assert proc.returncode == 2 and "not valid JSON" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def peer_certificate(gw: Gateway) -> bytes:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    client = ftplib.FTP_TLS(context=context, timeout=30)
    client.connect(gw.host, gw.port)
    client.auth()
    assert isinstance(client.sock, ssl.SSLSocket)
    der = client.sock.getpeercert(binary_form=True)
    client.quit()
    assert isinstance(der, bytes)
    return der


def der_of(pem: Path) -> bytes:
    text = pem.read_text()
    block = text[text.index("-----BEGIN CERTIFICATE-----"):text.index("-----END CERTIFICATE-----") + 25]
    return ssl.PEM_cert_to_DER_cert(block)


def test_hup_reloads_the_tls_certificate(gateway_factory: Callable[..., Gateway],
                                         tmp_path: Path) -> None:
    pem, first, second = tmp_path / "ftp.pem", tmp_path / "first.pem", tmp_path / "second.pem"
    write_self_signed(first)
    write_self_signed(second)
    pem.write_bytes(first.read_bytes())
    gw = gateway_factory("--tls-cert", str(pem))
    assert peer_certificate(gw) == der_of(first)
    pem.write_bytes(second.read_bytes())
    assert peer_certificate(gw) == der_of(first)  # read at start and on HUP only
    os.kill(gw.proc.pid, signal.SIGHUP)
    wait_until(lambda: "TLS certificate read again" in gw.log(), 20, "the reload")
    assert peer_certificate(gw) == der_of(second)
    # An unusable certificate is refused with a reason; the one in use stays.
    pem.write_text("not a certificate\n")
    os.kill(gw.proc.pid, signal.SIGHUP)
    wait_until(lambda: "TLS certificate not reloaded" in gw.log(), 20, "the refused reload")
    assert peer_certificate(gw) == der_of(second)
    serving(gw)


def test_usr1_reopens_the_log_file(gateway_factory: Callable[..., Gateway], tmp_path: Path) -> None:
    log = tmp_path / "ftp.log"
    gw = gateway_factory("--log-file", str(log))
    failed_login(gw, "before-rotation")
    wait_until(lambda: "before-rotation" in log.read_text(), 20, "the first line")
    rotated = log.rename(tmp_path / "ftp.log.1")  # what logrotate does
    os.kill(gw.proc.pid, signal.SIGUSR1)
    wait_until(log.exists, 20, "a new log file")
    failed_login(gw, "after-rotation")
    wait_until(lambda: "after-rotation" in log.read_text(), 20, "a line in the new file")
    assert "before-rotation" not in log.read_text()
    assert "after-rotation" not in rotated.read_text()
    serving(gw)
    # A path that cannot be opened: the error goes to the file still open, nothing is lost.
    log.rename(tmp_path / "ftp.log.2")
    log.mkdir()
    os.kill(gw.proc.pid, signal.SIGUSR1)
    second = tmp_path / "ftp.log.2"
    wait_until(lambda: "cannot reopen the log file" in second.read_text(), 20, "the error")
    failed_login(gw, "still-logged")
    wait_until(lambda: "still-logged" in second.read_text(), 20, "a line in the old file")
    serving(gw)
    assert gw.log() == ""  # nothing on stderr: the log file has it all
