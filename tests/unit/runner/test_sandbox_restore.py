"""A script leaves no process state behind, in each execution mode.

`mutate.py` changes every piece of process state the sandbox restores; `report.py` describes
that state. Whatever the mode, the report after a mutating request is the report before it.
Persistent mode shares the worker, and there the worker (this test process) must get its
own state back as well.
"""

from __future__ import annotations

import atexit
import ctypes
import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.fcgi import cgi_params
from tests.support.inprocess import InProcessRunner

from .conftest import StartRunner

MUTATE = """\
import atexit, cgi, io, os, signal, sys
print("Content-Type: text/plain")
print()
print("mutated", flush=True)
os.environ["LEFT_BEHIND"] = "environ"  # os.environ and, through putenv, the C environment
os.chdir("/")
sys.argv.append("left-behind")
sys.path.insert(0, "/left/behind")
LEFT_BEHIND = "__main__"
def at_exit():
    with open({atexit_log!r}, "a") as f:
        f.write("ran\\n")
atexit.register(at_exit)
signal.signal(signal.SIGUSR1, lambda signum, frame: None)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
os.umask(0o077)
def left_behind(*args): pass
sys.excepthook = left_behind
cgi.maxlen = 50
sys.stdin, sys.stdout, sys.stderr = io.StringIO("left behind"), io.StringIO(), io.StringIO()
"""

REPORT = """\
import cgi, ctypes, json, os, signal, sys
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p
mask = os.umask(0)
os.umask(mask)
def handler(signum):
    h = signal.getsignal(signum)
    return getattr(h, "__qualname__", None) or getattr(h, "name", None) or repr(h)
state = {
    "environ": [os.environ.get("LEFT_BEHIND"), libc.getenv(b"LEFT_BEHIND")],
    # The bytes view of the same mapping: the request's too, and nothing left behind in it.
    "environb": [os.environb.get(b"LEFT_BEHIND"), os.environb.get(b"REQUEST_METHOD")],
    "stdio": sys.stdin.read(),
    "argv": sys.argv[1:],
    "cwd": os.getcwd(),
    "sys.path": sys.path,
    "__main__": ["LEFT_BEHIND" in globals(), sys.modules["__main__"].__dict__ is globals()],
    "signals": {s.name: handler(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT,
                                            signal.SIGPIPE, signal.SIGHUP)},
    "umask": mask,
    "excepthook": getattr(sys.excepthook, "__qualname__", repr(sys.excepthook)),
    "cgi.maxlen": cgi.maxlen,
}
sys.stderr.write("report.py reached the error log\\n")
print("Content-Type: application/json")
print()
print(json.dumps(state, default=repr))
"""

# mutate.py, answering with a local redirect to report.py instead.
_HEAD = 'print("Content-Type: text/plain")\nprint()\nprint("mutated", flush=True)\n'
assert _HEAD in MUTATE
MUTATE_AND_REDIRECT = MUTATE.replace(_HEAD, 'print("Location: /cgi-bin/report.py")\nprint()\n')

PIECES = ["environ", "environb", "stdio", "argv", "cwd", "sys.path", "__main__", "signals", "umask",
          "excepthook", "cgi.maxlen"]


@pytest.fixture(params=["persistent", "fork", "exec"])
def runner(request: pytest.FixtureRequest, in_process: StartRunner, tmp_path: Path) -> Iterator[InProcessRunner]:
    atexit_log = tmp_path / "atexit.log"
    yield in_process({"mutate.py": MUTATE.format(atexit_log=str(atexit_log)), "report.py": REPORT,
                      "redirect_mutated.py": MUTATE_AND_REDIRECT.format(atexit_log=os.devnull)},
                     mode=request.param)


def report(runner: InProcessRunner) -> dict[str, Any]:
    resp = runner.request(cgi_params("/cgi-bin/report.py", method="POST", CONTENT_LENGTH="4"),
                          b"ping")
    assert resp.status == 200, resp.stdout
    state: dict[str, Any] = json.loads(resp.body)
    return state


def mutate(runner: InProcessRunner) -> None:
    resp = runner.request(cgi_params("/cgi-bin/mutate.py"))
    assert (resp.status, resp.body) == (200, b"mutated\n"), resp.stdout


def error_log(runner: InProcessRunner) -> str:
    path = runner.site / ".cgirt" / "logs" / "error.log"
    return path.read_text() if path.exists() else ""


@pytest.mark.parametrize("piece", PIECES)
def test_the_next_request_finds_nothing_left_behind(runner: InProcessRunner, piece: str) -> None:
    before = report(runner)
    mutate(runner)
    after = report(runner)
    assert after[piece] == before[piece]
    if piece == "stdio":  # its stdin is its own body, its stderr goes to the site's log
        assert after["stdio"] == "ping"
        assert error_log(runner).count("report.py reached the error log") == 2
    if piece == "cwd":
        assert after["cwd"] == str(runner.site / "cgi-bin")
    if piece == "environ":
        assert after["environ"] == [None, None]
    if piece == "environb":
        assert after["environb"] == [None, repr(b"POST")]


def test_an_internal_redirect_after_a_script_that_changed_everything_starts_clean(
        runner: InProcessRunner) -> None:
    """In a fork-mode child, which exits after the response, the state a script changed is
    left in place, unless a local Location: makes it run another script after all."""
    direct = runner.request(cgi_params("/cgi-bin/report.py"))
    redirected = runner.request(cgi_params("/cgi-bin/redirect_mutated.py"))
    assert (direct.status, redirected.status) == (200, 200), redirected.stdout
    assert json.loads(redirected.body) == json.loads(direct.body)


def test_atexit_handlers_run_once_at_the_end_of_their_own_request(
        runner: InProcessRunner, tmp_path: Path) -> None:
    mutate(runner)
    log = tmp_path / "atexit.log"
    assert log.read_text() == "ran\n"  # as at a CGI process's exit
    report(runner)
    assert log.read_text() == "ran\n"  # and not again


def process_state() -> dict[str, Any]:
    """This process's own state, as the sandbox restores it. By design, the current directory
    is not restored (each request sets its own), and sys.path comes back absolute (a relative
    entry would import from the last script's directory)."""
    libc = ctypes.CDLL(None)
    libc.getenv.restype = ctypes.c_char_p
    cgi = sys.modules.get("cgi")
    return {
        # pytest names the test phase in PYTEST_CURRENT_TEST.
        "environ": {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"},
        "environb": {k: v for k, v in os.environb.items() if k != b"PYTEST_CURRENT_TEST"},
        "c environ": libc.getenv(b"LEFT_BEHIND"),
        "stdio": (sys.stdin, sys.stdout, sys.stderr), "argv": list(sys.argv),
        "sys.path": [os.path.abspath(p) for p in sys.path], "__main__": sys.modules["__main__"],
        "atexit": (atexit.register, atexit.unregister),
        "signals": {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1, signal.SIGALRM)},
        "umask": _umask(), "excepthook": sys.excepthook,
        "cgi.maxlen": getattr(cgi, "maxlen", 0),  # 0 also before cgi is imported
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _put_back(state: dict[str, Any]) -> None:
    """Whatever a failing test let leak into this process, so the next test starts clean
    (a leak would otherwise be the next test's baseline, and pass unseen there)."""
    for name in set(os.environ) - set(state["environ"]) - {"PYTEST_CURRENT_TEST"}:
        del os.environ[name]  # unsetenv: the C environment too
    os.environ.update(state["environ"])
    sys.stdin, sys.stdout, sys.stderr = state["stdio"]
    sys.argv[:] = state["argv"]
    sys.path[:] = state["sys.path"]
    sys.modules["__main__"] = state["__main__"]
    atexit.register, atexit.unregister = state["atexit"]
    for signum, handler in state["signals"].items():
        signal.signal(signum, handler)
    os.umask(state["umask"])
    sys.excepthook = state["excepthook"]
    if "cgi" in sys.modules:
        setattr(sys.modules["cgi"], "maxlen", state["cgi.maxlen"])


@pytest.fixture(autouse=True)
def this_process_keeps_its_state() -> Iterator[None]:
    """This process is the worker of persistent mode: after every test, in every mode, it
    has its own state back."""
    before = process_state()
    yield
    after = process_state()
    leaked = sorted(k for k, v in after.items() if v != before[k])
    if leaked:
        _put_back(before)
    assert not leaked, f"left in the worker: {leaked}"


def test_persistent_mode_gives_the_worker_its_own_state_back(
        in_process: StartRunner, tmp_path: Path) -> None:
    runner = in_process({"mutate.py": MUTATE.format(atexit_log=str(tmp_path / "atexit.log"))},
                        mode="persistent")
    before = process_state()
    mutate(runner)
    after = process_state()
    assert {k: v for k, v in after.items() if v != before[k]} == {}
