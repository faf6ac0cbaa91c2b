"""systemd's readiness protocol (sd_notify), without libsystemd.

One datagram to $NOTIFY_SOCKET; absent (not under systemd, Type=simple), it does nothing."""

from __future__ import annotations

import os
import socket


def notify(state: str) -> None:
    address = os.environ.get("NOTIFY_SOCKET", "")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]  # abstract namespace
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
        try:
            s.connect(address)
            s.sendall(state.encode())
        except OSError:
            pass  # systemd gone: nothing to tell
