"""The slow log as a site owner meets it: a script that sleeps, loops or hangs past
slowlog_timeout or its timeout leaves its stack, with its own lines, in logs/slow.log,
fetched over FTP from a real gateway; the runner is a real `cgirt serve`."""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ftp_harness import Gateway

from tests.support.fcgi import cgi_params, request
from tests.support.procs import wait_for
from tests.support.servers import Runner

pytestmark = pytest.mark.integration

SLEEPER = """\
import time


def wait_for_the_database(seconds):
    time.sleep(seconds)  # the line the owner must see


print("Content-Type: text/plain")
print()
wait_for_the_database(float(__import__("os").environ["QUERY_STRING"]))
print("done")
"""

SPINNER = """\
print("Content-Type: text/plain")
print()
n = 0
while True:
    n += 1  # spinning
"""


@pytest.fixture
def runner(gateway: Gateway, tmp_path: Path) -> Iterator[Runner]:
    cgi = gateway.site / "cgi-bin"
    (cgi / "sleeper.py").write_text(SLEEPER)
    (cgi / "spinner.py").write_text(SPINNER)
    (cgi / "forked").mkdir()
    (cgi / "forked" / ".cgirt-mode").write_text("fork\n")
    (cgi / "forked" / "sleeper.py").write_text(SLEEPER)
    (tmp_path / "runner").mkdir()
    r = Runner(gateway.site, tmp_path / "runner", "--slowlog-timeout", "1", "--timeout", "4")
    yield r
    r.stop()


def slow_log_over_ftp(gateway: Gateway) -> str:
    client = gateway.ftp()
    try:
        if "slow.log" not in client.nlst("logs"):
            return ""
        out = io.BytesIO()
        client.retrbinary("RETR logs/slow.log", out.write)
        return out.getvalue().decode()
    finally:
        client.quit()


def entries(log: str) -> list[str]:
    return [e for e in log.split("\n\n") if e.strip()]


def get(runner: Runner, site: Path, path: str, query: str) -> int:
    params = cgi_params(path, query, SCRIPT_FILENAME=f"{site}{path}")
    return request(runner.address, params, timeout=60).status


def test_a_slow_script_leaves_its_stack(gateway: Gateway, runner: Runner) -> None:
    assert get(runner, gateway.site, "/cgi-bin/sleeper.py", "2.5") == 200
    log = wait_for(lambda: slow_log_over_ftp(gateway), 20, "logs/slow.log over FTP")
    (entry,) = entries(str(log))  # written once, though the request ran 1.5 s past it
    assert re.match(r"\[[\dT:.+-]+\] \[pid \d+\] slow request after 1\.\d s: "
                    r"GET /cgi-bin/sleeper.py\?2.5\nscript: cgi-bin/sleeper.py\n", entry), entry
    assert entry.endswith(
        'Traceback (most recent call last):\n'
        '  File "cgi-bin/sleeper.py", line 10, in <module>\n'
        '    wait_for_the_database(float(__import__("os").environ["QUERY_STRING"]))\n'
        '  File "cgi-bin/sleeper.py", line 5, in wait_for_the_database\n'
        '    time.sleep(seconds)  # the line the owner must see'), entry
    assert "cgirt" not in entry  # none of the runner's own frames
    assert get(runner, gateway.site, "/cgi-bin/sleeper.py", "0.1") == 200
    assert len(entries(slow_log_over_ftp(gateway))) == 1  # a quick request leaves nothing


def test_a_timed_out_busy_loop_leaves_its_stack_twice(gateway: Gateway, runner: Runner) -> None:
    assert get(runner, gateway.site, "/cgi-bin/spinner.py", "") == 504
    log = wait_for(lambda: len(entries(slow_log_over_ftp(gateway))) == 2 and slow_log_over_ftp(gateway),
                   20, "both entries")
    slow, timed_out = entries(str(log))
    assert "slow request after 1." in slow and "timed out after 4." in timed_out
    for entry in (slow, timed_out):
        # Python checks for signals where the loop jumps back: either line of the loop.
        assert re.search(r'  File "cgi-bin/spinner.py", line (4|5), in <module>\n'
                         r'    (while True:|n \+= 1  # spinning)$', entry), entry


def test_fork_mode_stack_comes_from_the_child(gateway: Gateway, runner: Runner) -> None:
    assert get(runner, gateway.site, "/cgi-bin/forked/sleeper.py", "2") == 200
    log = wait_for(lambda: slow_log_over_ftp(gateway), 20, "logs/slow.log over FTP")
    (entry,) = entries(str(log))
    assert "slow request after" in entry
    assert entry.endswith('  File "cgi-bin/forked/sleeper.py", line 5, in wait_for_the_database\n'
                          '    time.sleep(seconds)  # the line the owner must see'), entry


def test_slow_log_is_read_only_over_ftp(gateway: Gateway, runner: Runner) -> None:
    assert get(runner, gateway.site, "/cgi-bin/sleeper.py", "1.5") == 200
    wait_for(lambda: slow_log_over_ftp(gateway), 20, "logs/slow.log over FTP")
    client = gateway.ftp()
    try:
        with pytest.raises(Exception, match="550.*read-only"):
            client.storbinary("STOR logs/slow.log", io.BytesIO(b"x"))
        with pytest.raises(Exception, match="550"):
            client.delete("logs/slow.log")
    finally:
        client.quit()
    assert "slow request" in slow_log_over_ftp(gateway)
