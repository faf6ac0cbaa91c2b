"""Quota, size and connection limits; the per-IP ban across connections."""

from __future__ import annotations

import ftplib
import io
import socket
from collections.abc import Callable

import pytest
from ftp_harness import Gateway, store, wait_until

pytestmark = pytest.mark.integration


def staging_is_empty(gateway: Gateway) -> bool:
    return not any((gateway.site / ".cgirt" / "staging").iterdir())


def test_quota_bytes_552_keeps_old_file(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory("--quota-size", "200000")
    target = gateway.site / "htdocs" / "data.bin"
    target.write_bytes(b"old" * 1000)
    client = gateway.ftp()
    with pytest.raises(ftplib.error_perm, match="552 .*quota"):
        client.storbinary("STOR htdocs/data.bin", io.BytesIO(b"x" * 400_000))
    assert target.read_bytes() == b"old" * 1000
    assert staging_is_empty(gateway)
    # Replacing a file only needs room for the difference.
    store(client, "htdocs/data.bin", b"y" * 150_000)
    assert target.read_bytes() == b"y" * 150_000
    client.quit()
    assert "discarded /htdocs/data.bin" in gateway.deploy_log()


def test_quota_files(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory("--quota-files", "2")  # hello.py is the first
    client = gateway.ftp()
    store(client, "htdocs/one.txt", b"1")
    with pytest.raises(ftplib.error_perm, match="552"):
        store(client, "htdocs/two.txt", b"2")
    store(client, "htdocs/one.txt", b"replaced")  # replacing adds no file
    client.quit()
    assert not (gateway.site / "htdocs" / "two.txt").exists()


def test_max_file_size(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory("--max-file-size", "1000")
    client = gateway.ftp()
    with pytest.raises(ftplib.error_perm, match="552 .*maximum of 1000 bytes"):
        store(client, "htdocs/big.txt", b"z" * 5000)
    store(client, "htdocs/small.txt", b"z" * 1000)
    client.quit()
    assert not (gateway.site / "htdocs" / "big.txt").exists()
    assert staging_is_empty(gateway)


def test_max_connections_per_ip(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory("--max-connections-per-ip", "2")
    first, second = gateway.ftp(login=False), gateway.ftp(login=False)
    with pytest.raises(ftplib.error_temp, match="421"):
        gateway.ftp(login=False)
    first.close()
    second.close()


def test_ban_across_connections_and_expiry(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory("--ban-failures", "3", "--ban-window", "60",
                              "--ban-duration", "2")
    for _ in range(3):  # three connections, one failure each
        client = gateway.ftp(login=False)
        with pytest.raises(ftplib.error_perm, match="530"):
            client.login(gateway.user, "wrong")
        client.close()
    # Banned now, even with the right password, and told why.
    with socket.create_connection((gateway.host, gateway.port), timeout=10) as sock, \
            sock.makefile("rb") as replies:
        reply = replies.readline().decode()
    assert reply.startswith("421 Too many failed logins")

    def login_works() -> bool:
        try:
            gateway.ftp().quit()
        except ftplib.error_temp:
            return False
        return True

    wait_until(login_works, 10, "the ban to expire")
    assert "banning 127.0.0.1" in gateway.log()


def test_idle_timeout(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory("--idle-timeout", "1")
    client = gateway.ftp()
    client.sock.settimeout(10)
    assert client.getline().startswith("421 Control connection timed out")
    client.close()


def test_port_to_foreign_address_refused(gateway: Gateway) -> None:
    client = gateway.ftp()
    with pytest.raises(ftplib.error_perm, match="501|500|425"):
        client.sendcmd("PORT 10,1,2,3,200,10")
    client.quit()


def test_banner_passive_range_and_masquerade(gateway_factory: Callable[..., Gateway]) -> None:
    gateway = gateway_factory("--passive-ports", "61000-61004", "--masquerade", "10.9.8.7")
    client = gateway.ftp(login=False)
    welcome = client.getwelcome()
    assert welcome == "220 cgirt FTP gateway ready." and "pyftpdlib" not in welcome
    client.login(gateway.user, gateway.password)
    reply = client.sendcmd("PASV")
    numbers = [int(n) for n in reply[reply.index("(") + 1:reply.index(")")].split(",")]
    assert numbers[:4] == [10, 9, 8, 7]
    assert 61000 <= numbers[4] * 256 + numbers[5] <= 61004
    client.quit()
