"""What a script leaves that cannot be put back gets its worker replaced after the response:
a thread left running (after a brief wait), os.environ rebound."""

from __future__ import annotations

import os
import threading

from cgirt.fastcgi.server import SingleRequestControl
from tests.support.fcgi import cgi_params

from .conftest import StartRunner

LEAVES = """\
import os, threading
threading.Thread(target=os.read, args=({fd}, 1)).start()  # blocked until the test writes
print("Content-Type: text/plain")
print()
print("left one")
"""

JOINS = """\
import threading
t = threading.Thread(target=print, args=("Content-Type: text/plain\\n",))
t.start()
t.join()
"""


class RecordingControl(SingleRequestControl):
    def __init__(self) -> None:
        self.recycled = 0

    def recycle_after_request(self) -> None:
        self.recycled += 1


def test_a_thread_left_running_replaces_the_worker(in_process: StartRunner) -> None:
    r, w = os.pipe()
    try:
        runner = in_process({"leaves.py": LEAVES.format(fd=r), "joins.py": JOINS})
        control = runner.control = RecordingControl()
        assert runner.request(cgi_params("/cgi-bin/joins.py")).status == 200
        assert control.recycled == 0  # a thread joined by its own script is no stray
        resp = runner.request(cgi_params("/cgi-bin/leaves.py"))
        assert (resp.status, resp.body) == (200, b"left one\n")
        assert control.recycled == 1
    finally:
        os.write(w, b"x")  # the stray thread ends
        for t in threading.enumerate():
            if t is not threading.main_thread() and not t.daemon:
                t.join(10)
        os.close(r)
        os.close(w)


REBINDS = """\
import os
os.environ = {"X": "1"}
print("Content-Type: text/plain")
print()
print("rebound")
"""


def test_a_script_rebinding_os_environ_gets_its_worker_replaced(in_process: StartRunner) -> None:
    runner = in_process({"rebinds.py": REBINDS})
    control = runner.control = RecordingControl()
    environ = os.environ
    try:
        resp = runner.request(cgi_params("/cgi-bin/rebinds.py"))
    finally:
        os.environ = environ  # what the replaced worker would never need
    assert (resp.status, resp.body) == (200, b"rebound\n")
    assert control.recycled == 1
    assert "changed os.environ" in (runner.site / ".cgirt" / "logs" / "error.log").read_text()
    assert os.environ.get("X") is None and "PATH" in os.environ  # the worker's own, whole
