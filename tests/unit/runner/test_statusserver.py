"""The status server in the master's loop: real sockets, driven turn by turn as the loop does."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from cgirt.runner.statusserver import PoolMonitor, StatusServer
from cgirt.runner.supervisor import Supervisor, SupervisorSettings, _Worker


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[StatusServer, str, Supervisor]]:
    fastcgi = socket.socket(socket.AF_UNIX)
    fastcgi.bind(str(tmp_path / "fcgi.sock"))
    fastcgi.listen(16)
    admin = socket.socket(socket.AF_UNIX)
    path = str(tmp_path / "status.sock")
    admin.bind(path)
    admin.listen(16)
    sup = Supervisor(fastcgi, lambda *a: None, SupervisorSettings(workers=2))
    srv = StatusServer(admin, [PoolMonitor("site", sup, fastcgi)])
    yield srv, path, sup
    srv.close()
    fastcgi.close()


def ask(srv: StatusServer, path: str, request: bytes) -> bytes:
    client = socket.socket(socket.AF_UNIX)
    client.settimeout(10)
    client.connect(path)
    try:
        srv.on_readable(srv.listener.fileno())
        client.sendall(request)
        for _ in range(100):  # as the master's loop would, while the request is incomplete
            for fd in srv.fds()[1:]:
                srv.on_readable(fd)
        return b"".join(iter(lambda: client.recv(65536), b""))
    finally:
        client.close()


def test_ping_status_and_formats(server: tuple[StatusServer, str, Supervisor]) -> None:
    srv, path, sup = server
    assert ask(srv, path, b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"\r\n\r\npong\n")
    head, _, body = ask(srv, path, b"GET /status HTTP/1.0\r\n\r\n").partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.0 200 OK") and b"text/plain" in head
    assert b"pool:                 site\n" in body and b"total processes:      0\n" in body
    assert b"listen queue len:     16\n" in body
    head, _, body = ask(srv, path, b"GET /cgirt/status?json&full HTTP/1.0\r\n\r\n").partition(b"\r\n\r\n")
    assert b"application/json" in head and b'"processes": []' in body
    head = ask(srv, path, b"HEAD /status?openmetrics HTTP/1.0\r\n\r\n")
    assert b"application/openmetrics-text" in head and head.endswith(b"\r\n\r\n")


def test_a_worker_running_a_request_is_counted(server: tuple[StatusServer, str, Supervisor]) -> None:
    srv, path, sup = server
    sup.workers[4242] = _Worker(pid=4242, slot=0, booted=True)
    sup.scoreboard.writer(0).request_started("GET", "/cgi-bin/x.py", "/s/cgi-bin/x.py")
    srv.on_tick(0.0)
    body = ask(srv, path, b"GET /status?full HTTP/1.0\r\n\r\n").decode()
    assert "active processes:     1\n" in body and "max children reached: 0\n" in body
    assert "state:                    Running" in body and "/cgi-bin/x.py" in body
    sup.workers[4243] = _Worker(pid=4243, slot=1, booted=True)
    sup.scoreboard.writer(1).request_started("GET", "/cgi-bin/y.py", "/s/cgi-bin/y.py")
    srv.on_tick(0.0)
    srv.on_tick(0.0)  # still all busy: one spell, counted once
    body = ask(srv, path, b"GET /status HTTP/1.0\r\n\r\n").decode()
    assert "max children reached: 1\n" in body and "max active processes: 2\n" in body
    assert "accepted conn:        2\n" in body


@pytest.mark.parametrize("request_, status", [
    (b"POST /status HTTP/1.0\r\n\r\n", b"405 Method Not Allowed"),
    (b"GET /nothing HTTP/1.0\r\n\r\n", b"404 Not Found"),
    (b"GET /status?xml HTTP/1.0\r\n\r\n", b"400 Bad Request"),
    (b"GET /status?json&openmetrics HTTP/1.0\r\n\r\n", b"400 Bad Request"),
    (b"\x16\x03\x01 garbage\r\n\r\n", b"400 Bad Request"),
    (b"GET /status?" + b"a" * 9000, b"400 Bad Request"),
])
def test_bad_requests_get_a_clear_status(server: tuple[StatusServer, str, Supervisor],
                                         request_: bytes, status: bytes) -> None:
    srv, path, _ = server
    answer = ask(srv, path, request_)
    assert answer.startswith(b"HTTP/1.0 " + status), answer[:200]
    assert srv.fds() == [srv.listener.fileno()]  # nothing left open


def test_a_silent_client_is_dropped_after_its_deadline(server: tuple[StatusServer, str, Supervisor]) -> None:
    srv, path, _ = server
    client = socket.socket(socket.AF_UNIX)
    client.connect(path)
    try:
        srv.on_readable(srv.listener.fileno())
        assert len(srv.fds()) == 2
        srv.on_tick(1e12)  # far past any deadline
        assert srv.fds() == [srv.listener.fileno()]
        client.settimeout(10)
        assert client.recv(10) == b""
    finally:
        client.close()


def test_a_failing_sample_is_logged_not_raised_into_the_master(
        server: tuple[StatusServer, str, Supervisor], caplog: pytest.LogCaptureFixture) -> None:
    srv, path, _ = server

    class Broken(PoolMonitor):
        def sample(self) -> None:
            raise RuntimeError("boom")

    srv.monitors.append(Broken("broken", srv.monitors[0].supervisor, srv.monitors[0].listener))
    srv.on_tick(0.0)  # no exception: the master's loop goes on
    assert "status: sampling pool broken" in caplog.text and "boom" in caplog.text
    assert ask(srv, path, b"GET /ping HTTP/1.0\r\n\r\n").endswith(b"pong\n")


def test_a_publish_notice_bumps_the_epoch_only_when_signed(tmp_path: Path) -> None:
    from cgirt.notice import Verifier, request
    from cgirt.runner.freshness import PublishEpoch, PublishNotices

    admin = socket.socket(socket.AF_UNIX)
    path = str(tmp_path / "status.sock")
    admin.bind(path)
    admin.listen(16)
    epoch = PublishEpoch()
    secret = b"k" * 32
    srv = StatusServer(admin, [], PublishNotices(Verifier(secret, "www"), epoch))
    try:
        forged = ask(srv, path, request(b"x" * 32, "www"))
        assert forged.startswith(b"HTTP/1.0 403 Forbidden"), forged
        assert epoch.read() == 0
        assert ask(srv, path, b"GET /publish HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 405")
        answer = ask(srv, path, request(secret, "www"))
        assert answer.startswith(b"HTTP/1.0 200 OK") and answer.endswith(b"published 1\n")
        assert epoch.read() == 1
    finally:
        srv.close()


def test_without_a_secret_there_is_no_publish_page(server: tuple[StatusServer, str, Supervisor]) -> None:
    srv, path, _ = server
    assert ask(srv, path, b"POST /publish HTTP/1.0\r\n\r\n").startswith(b"HTTP/1.0 405")
