"""Hostile FTP input beyond tests/integration/ftp/ (issue 6, part 3).

Already proven there and not repeated: traversal strings and 1000/5000-character paths on
RETR/STOR, symlinks leading out, NUL in RETR, the hidden state directory, the read-only
logs folder, SITE CHMOD special bits, PORT to 10.1.2.3, sequential failed logins banned
across connections, idle timeout, quotas, killed clients (test_ftp_confinement.py,
test_ftp_limits.py, test_ftp_killed_clients.py).
"""

from __future__ import annotations

import ftplib
import io
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.ftp.ftp_harness import (  # noqa: F401 - fixtures
    Gateway, gateway, gateway_factory, no_leaks, store, wait_until,
)

pytestmark = pytest.mark.integration

SCRIPT = b"print('Content-Type: text/plain')\nprint()\nprint('ok')\n"


def raw(gw: Gateway) -> tuple[socket.socket, io.BufferedReader]:
    sock = socket.create_connection((gw.host, gw.port), timeout=10)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"220")
    return sock, reader


def reply(reader: io.BufferedReader) -> str:
    line = reader.readline().decode("latin-1")
    while line[3:4] == "-":
        line = reader.readline().decode("latin-1")
    return line.strip()


def login_raw(gw: Gateway) -> tuple[socket.socket, io.BufferedReader]:
    sock, reader = raw(gw)
    sock.sendall(f"USER {gw.user}\r\n".encode())
    assert reply(reader).startswith("331")
    sock.sendall(f"PASS {gw.password}\r\n".encode())
    assert reply(reader).startswith("230")
    return sock, reader


@pytest.mark.parametrize("command", [
    b"STOR cgi-bin/x.py\x00.txt", b"CWD cgi-bin\x00/..", b"MKD new\x00dir", b"DELE cgi-bin/hello.py\x00",
    b"RNFR cgi-bin/hello.py\x00", b"SIZE cgi-bin/hello.py\x00", b"SITE CHMOD 755 cgi-bin/hello.py\x00",
    b"MLST \x00", b"LIST \x00/etc", b"SITE CHECK cgi-bin\x00",
])
def test_nul_bytes_anywhere_are_refused_and_nothing_changes(gateway: Gateway, command: bytes) -> None:
    before = sorted(p.name for p in gateway.site.rglob("*") if ".cgirt" not in p.parts)
    sock, reader = login_raw(gateway)
    sock.sendall(command + b"\r\n")
    assert reply(reader).startswith("501"), command
    sock.sendall(b"NOOP\r\n")
    assert reply(reader).startswith("200")
    sock.close()
    reader.close()
    assert sorted(p.name for p in gateway.site.rglob("*") if ".cgirt" not in p.parts) == before


def test_nul_in_user_and_password(gateway: Gateway) -> None:
    sock, reader = raw(gateway)
    sock.sendall(f"USER {gateway.user}\x00root\r\n".encode())
    assert reply(reader).startswith("501")
    sock.sendall(f"USER {gateway.user}\r\n".encode())
    assert reply(reader).startswith("331")
    sock.sendall(f"PASS {gateway.password}\x00\r\n".encode())
    assert reply(reader).startswith("501")
    sock.sendall(b"NOOP\r\n")
    assert reply(reader)[:3] in ("200", "530")
    sock.close()
    reader.close()


def test_overlong_command_lines_and_names(gateway: Gateway) -> None:
    sock, reader = login_raw(gateway)
    for size in (3000, 100_000, 1_000_000):
        sock.sendall(b"NOOP " + b"A" * size + b"\r\n")
        assert reply(reader).startswith("500 Command too long"), size
    sock.sendall(b"NOOP\r\n")
    assert reply(reader).startswith("200")  # in step: the long lines were answered once each
    sock.close()
    reader.close()
    client = gateway.ftp()
    long_name = "n" * 300  # above NAME_MAX: refused before any data is sent
    for command in (f"MKD {long_name}", f"RNFR cgi-bin/hello.py", f"RNTO {long_name}"):
        try:
            client.sendcmd(command)
        except ftplib.error_perm as exc:
            assert str(exc).startswith("550"), (command, exc)
    with pytest.raises(ftplib.error_perm, match="550"):
        store(client, f"cgi-bin/{long_name}.py", SCRIPT)
    deep = "/".join(["d"] * 600)
    with pytest.raises(ftplib.error_perm):
        client.mkd(deep)
    with pytest.raises(ftplib.error_perm):
        store(client, deep + "/x.py", SCRIPT)
    assert client.sendcmd("NOOP").startswith("200")
    client.quit()
    assert (gateway.site / "cgi-bin" / "hello.py").exists()
    assert not list((gateway.site / ".cgirt" / "staging").iterdir())


def test_thousands_of_files(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory("--quota-files", "10000", "--quota-size", "100000000")
    many = gw.site / "htdocs" / "many"
    many.mkdir()
    for i in range(4000):
        (many / f"file-{i:05d}.txt").write_bytes(b"x" * 10)

    def upload(batch: int) -> None:
        client = gw.ftp()
        for i in range(40):
            store(client, f"htdocs/many/up-{batch}-{i}.txt", b"uploaded %d" % i)
        client.quit()

    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(upload, range(4)))
    took = time.monotonic() - started
    assert took < 60, f"160 uploads into a 4000-file site took {took:.1f} s"
    client = gw.ftp()
    assert len(client.nlst("htdocs/many")) == 4160
    lines: list[str] = []
    client.retrlines("LIST htdocs/many", lines.append)
    assert len(lines) == 4160
    assert len(list(client.mlsd("htdocs/many"))) == 4160
    client.quit()
    assert (many / "up-3-39.txt").read_bytes() == b"uploaded 39"


def test_slow_control_connections_do_not_stall_others(gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory("--idle-timeout", "3")
    slow = []
    for _ in range(6):  # slowloris: half a command each, never finished
        sock, reader = raw(gw)
        sock.sendall(b"USER ali")
        slow.append((sock, reader))
    started = time.monotonic()
    client = gw.ftp()
    for n in range(5):
        assert "published" in store(client, "cgi-bin/hello.py", SCRIPT.replace(b"ok", b"v%d" % n))
    client.quit()
    assert time.monotonic() - started < 10
    for sock, reader in slow:  # and the idle timeout ends them
        sock.settimeout(15)
        assert reader.readline().startswith(b"421")
        sock.close()
        reader.close()


def test_a_stalled_data_connection_times_out_and_publishes_nothing(
        gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory("--data-timeout", "1")
    target = gw.site / "cgi-bin" / "hello.py"
    old = target.read_bytes()
    stalled = gw.ftp()
    stalled.voidcmd("TYPE I")
    conn = stalled.transfercmd("STOR cgi-bin/hello.py")
    conn.sendall(b"print('half')\n" * 100)  # then nothing: a stalled client
    trickle = gw.ftp()  # meanwhile, a slow but live one: a byte every 50 ms
    trickle.voidcmd("TYPE I")
    tconn = trickle.transfercmd("STOR htdocs/trickle.txt")
    for i in range(30):
        tconn.sendall(b"%d" % (i % 10))
        time.sleep(0.05)  # the pace of a slow client, not a synchronisation
    tconn.close()
    assert trickle.voidresp().startswith("226")
    trickle.quit()
    assert (gw.site / "htdocs" / "trickle.txt").read_bytes() == b"0123456789" * 3
    stalled.sock.settimeout(15)
    with pytest.raises(ftplib.Error) as info:
        stalled.voidresp()
    assert str(info.value)[:3] in ("421", "426"), info.value
    conn.close()
    stalled.close()
    wait_until(lambda: "discarded /cgi-bin/hello.py" in gw.deploy_log(), 10, "the discard")
    assert target.read_bytes() == old


@pytest.mark.parametrize("command", [
    "EPRT |1|10.1.2.3|2000|", "EPRT |2|::1|2000|", "PORT 127,0,0,1,0,25", "EPRT |1|127.0.0.1|22|",
    "PORT 192,168,1,1,200,10", "PORT 999,0,0,1,4,1", "EPRT |9|x|1|",
])
def test_active_mode_to_foreign_or_privileged_addresses_is_refused(gateway: Gateway, command: str) -> None:
    client = gateway.ftp()
    with pytest.raises(ftplib.Error) as info:
        client.sendcmd(command)
    assert str(info.value)[:3] in ("500", "501", "504", "522"), info.value
    assert client.sendcmd("NOOP").startswith("200")
    client.quit()


def test_parallel_brute_force_is_banned_before_the_right_password(
        gateway_factory: Callable[..., Gateway]) -> None:
    gw = gateway_factory("--ban-failures", "5", "--ban-window", "60", "--ban-duration", "60")
    guesses = [f"guess-{i}" for i in range(40)] + [gw.password]
    outcomes: list[str] = []
    lock = threading.Lock()

    def attempt(password: str) -> None:
        client = ftplib.FTP(timeout=10)
        try:
            client.connect(gw.host, gw.port)
            client.login(gw.user, password)
            result = "IN"
            client.quit()
        except ftplib.Error as exc:
            result = str(exc)[:3]
        except OSError:
            result = "closed"
        finally:
            client.close()  # refused: the socket is still ours to close
        with lock:
            outcomes.append(result)

    for start in range(0, len(guesses), 8):  # eight connections at a time
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(attempt, guesses[start:start + 8]))
    assert "IN" not in outcomes, outcomes
    assert outcomes.count("530") <= 5 + 8, outcomes  # checked: at most one batch past the limit
    assert outcomes.count("421") + outcomes.count("closed") >= len(guesses) - 13
    assert gw.password not in gw.log()
