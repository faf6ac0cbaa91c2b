"""The gateway's notices to the runner hosts: every host that did not acknowledge is named."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ftp_gateway.config import GatewayConfig
from ftp_gateway.errors import ConfigError
from ftp_gateway.notify import Runners, announce

SECRET = b"k" * 32


class Host:
    """A listening socket that answers each connection with `answer` (None: never)."""

    def __init__(self, answer: bytes | None, unix: Path | None = None) -> None:
        if unix is None:
            self.sock = socket.socket()
            self.sock.bind(("127.0.0.1", 0))
            self.address = "127.0.0.1:%d" % self.sock.getsockname()[1]
        else:  # a runner host on the gateway's machine
            self.sock = socket.socket(socket.AF_UNIX)
            self.sock.bind(str(unix))
            self.address = f"unix:{unix}"
        self.sock.listen(8)
        self.answer = answer
        self.received: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            self.received.append(conn.recv(4096))
            if self.answer is not None:
                conn.sendall(self.answer)
            else:
                conn.recv(1)  # holds the connection until the client gives up

    def close(self) -> None:
        self.sock.close()
        self.thread.join(10)


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    started: list[Host] = []
    yield started
    for host in started:
        host.close()


def closed_port() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    address = "127.0.0.1:%d" % s.getsockname()[1]
    s.close()
    return address


def test_every_host_acknowledged(hosts: list[Host]) -> None:
    hosts += [Host(b"HTTP/1.0 200 OK\r\n\r\npublished 1\n") for _ in range(2)]
    assert announce(Runners(tuple(h.address for h in hosts), SECRET, 5.0), "www") == []
    assert all(h.received[0].startswith(b"POST /publish?site=www&") for h in hosts)


def test_the_hosts_that_did_not_are_named_with_why(hosts: list[Host]) -> None:
    good = Host(b"HTTP/1.0 200 OK\r\n\r\npublished 1\n")
    refusing = Host(b"HTTP/1.0 403 Forbidden\r\n\r\npublish notice refused: bad signature\n")
    silent = Host(None)
    hosts += [good, refusing, silent]
    down = closed_port()
    started = time.monotonic()
    unreached = announce(Runners((good.address, refusing.address, silent.address, down),
                                 SECRET, 1.0), "www")
    assert time.monotonic() - started < 5  # bounded by the timeout, whatever the hosts do
    assert unreached == [
        f"{refusing.address}: refused (403 Forbidden: publish notice refused: bad signature)",
        f"{silent.address}: no answer within 1 s",
        f"{down}: Connection refused",
    ]


def test_runners_need_the_secret() -> None:
    with pytest.raises(ConfigError, match="runners needs publish_secret"):
        GatewayConfig(users_file=Path("/tmp/u.json"), runners=("10.0.0.2:9001",))


@pytest.mark.parametrize("value", ["10.0.0.2", "10.0.0.2:port", "10.0.0.2:9001,:x", 7])
def test_a_runner_that_is_not_host_port_is_named(value: object) -> None:
    from cgirt.config import parse_values

    _, issues = parse_values(GatewayConfig, {"runners": value})
    assert issues and "runners" in str(issues[0]) and not issues[0].warning, issues


def test_only_the_runners_of_the_site_are_notified(hosts: list[Host]) -> None:
    mine, everyones, others = (Host(b"HTTP/1.0 200 OK\r\n\r\npublished 1\n") for _ in range(3))
    hosts += [mine, everyones, others]
    runners = Runners((f"www={mine.address}", everyones.address, f"shop={others.address}"),
                      SECRET, 5.0)
    assert runners.of("www") == [mine.address, everyones.address]
    assert announce(runners, "www") == []
    assert mine.received and everyones.received and not others.received


def test_a_site_runner_needs_its_site_name() -> None:
    from cgirt.config import parse_values

    _, issues = parse_values(GatewayConfig, {"runners": "=10.0.0.2:9001"})
    assert issues and "names no site" in str(issues[0])


def test_a_runner_host_on_this_machine_is_reached_on_its_unix_socket(
        hosts: list[Host], tmp_path: Path) -> None:
    from cgirt.config import parse_values

    host = Host(b"HTTP/1.0 200 OK\r\n\r\npublished 1\n", unix=tmp_path / "status.sock")
    hosts.append(host)
    fields, issues = parse_values(GatewayConfig, {"runners": f"www={host.address}"})
    assert not issues and fields["runners"] == (f"www={host.address}",)
    assert announce(Runners(fields["runners"], SECRET, 5.0), "www") == []
    assert host.received[0].startswith(b"POST /publish?site=www&")
    gone = f"unix:{tmp_path}/nothing.sock"
    assert announce(Runners((gone,), SECRET, 5.0), "www") == [f"{gone}: No such file or directory"]
    _, issues = parse_values(GatewayConfig, {"runners": "www=unix:"})
    assert issues and "names no socket" in str(issues[0])
