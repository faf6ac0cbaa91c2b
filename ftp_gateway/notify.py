"""Before the 226: tell every runner host of a publish (`cgirt.notice`), wait for each answer.

Several runner hosts on a network filesystem see a publish late (each client's attribute
cache); a runner that has acknowledged the notice sees it on its very next request. The
notices go out at once, one thread each, and the publish waits at most `timeout` seconds
for all of them; a host that has not acknowledged by then is named in the FTP reply and the
gateway's log, and the reply says the publish is not yet live everywhere.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass

from cgirt.notice import request

MAX_ANSWER = 4096


@dataclass(frozen=True)
class Runners:
    """The runner hosts of this gateway's sites and the secret shared with them."""

    addresses: tuple[str, ...]  # [SITE=]HOST:PORT or [SITE=]unix:PATH (without SITE: every site's)
    secret: bytes
    timeout: float

    def of(self, site: str) -> list[str]:
        """The status addresses of the runners of the site directory named `site`."""
        chosen = []
        for item in self.addresses:
            name, sep, address = item.rpartition("=")
            if not sep or name == site:
                chosen.append(address)
        return chosen


def announce(runners: Runners, site: str, action: str = "publish") -> list[str]:
    """Notify every runner host of a publish to `site` (or ask for a reload); the hosts that
    did not acknowledge, each as "HOST:PORT: why", empty when every one did."""
    notice_of = {address: request(runners.secret, site, action=action)
                 for address in runners.of(site)}
    answers: dict[str, str | None] = {}
    deadline = time.monotonic() + runners.timeout

    def notify(address: str) -> None:
        answers[address] = _send(address, notice_of[address], deadline)

    threads = [threading.Thread(target=notify, args=(a,), daemon=True,
                                name=f"notify {a}") for a in notice_of]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    return [f"{address}: {answers.get(address) or _late(runners.timeout)}"
            for address in notice_of if answers.get(address) != ""]


def _connect(address: str, timeout: float) -> socket.socket:
    """HOST:PORT, or unix:PATH for a runner host on this machine."""
    if address.startswith("unix:"):
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            conn.settimeout(timeout)
            conn.connect(address[5:])
        except BaseException:
            conn.close()
            raise
        return conn
    host, _, port = address.rpartition(":")
    return socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)


def _late(timeout: float) -> str:
    return f"no answer within {timeout:g} s"


def _send(address: str, notice: bytes, deadline: float) -> str | None:
    """"" when acknowledged, None when out of time, else why not."""
    try:
        with _connect(address, max(0.01, deadline - time.monotonic())) as conn:
            conn.sendall(notice)
            answer = b""
            while len(answer) < MAX_ANSWER:
                conn.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = conn.recv(MAX_ANSWER)
                if not chunk:
                    break
                answer += chunk
    except TimeoutError:
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
    status = answer.split(b"\r\n", 1)[0].decode("latin-1")
    if status.split()[1:2] == ["200"]:
        return ""
    body = answer.partition(b"\r\n\r\n")[2].decode("utf-8", "replace").strip()
    return f"refused ({status[9:] or 'no reply'}{': ' + body if body else ''})"
