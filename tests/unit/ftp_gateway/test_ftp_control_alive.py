"""The completeness test's core: seeing a hang-up on the control connection."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from ftp_gateway.handler import control_alive, publish_reply
from ftp_gateway.publish import Outcome
from ftp_gateway.validate import Finding


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    listener.close()
    yield server, client
    server.close()
    client.close()


def channel(sock: socket.socket) -> SimpleNamespace:
    return SimpleNamespace(_closed=False, connected=True, socket=sock)


def test_live_connection_waits_out_the_grace(pair: tuple[socket.socket, socket.socket]) -> None:
    server, _client = pair
    started = time.monotonic()
    assert control_alive(channel(server), 0.05)
    assert time.monotonic() - started >= 0.04


def test_pending_command_is_not_a_hangup(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    client.sendall(b"NOOP\r\n")
    assert control_alive(channel(server), 0.05)


def test_peer_close_is_seen_without_waiting(pair: tuple[socket.socket, socket.socket]) -> None:
    server, client = pair
    client.close()
    started = time.monotonic()
    assert not control_alive(channel(server), 5.0)
    assert time.monotonic() - started < 1.0


def test_closed_channel_is_dead(pair: tuple[socket.socket, socket.socket]) -> None:
    server, _client = pair
    assert not control_alive(SimpleNamespace(_closed=True, connected=False, socket=server), 0)


def test_rejection_reply_is_a_valid_multiline_550() -> None:
    finding = Finding("/cgi-bin/a.py", 3, "SyntaxError: invalid\r\nsyntax")
    lines = publish_reply("/cgi-bin/a.py", Outcome(False, finding=finding)).split("\r\n")
    assert [line[:4] for line in lines] == ["550-", "550-", "550 "]
    assert lines[1] == "550-/cgi-bin/a.py, line 3: SyntaxError: invalid syntax"
    assert publish_reply("/x", Outcome(True, generation=7)).startswith("226 ")
