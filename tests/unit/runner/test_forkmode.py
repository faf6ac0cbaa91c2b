"""Fork mode's template: warmed up by the runner's own script, so its children start warm.

A child's cost is mostly the template's pages it writes, each copied by the kernel; what
the warm-up saves in page faults per request is measured by `python -m bench.forkcost`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cgirt.runner import app as app_module
from cgirt.runner.app import CgiApp
from tests.support.fcgi import cgi_params
from tests.support.inprocess import InProcessRunner
from tests.support.procs import wait_for

from .conftest import StartRunner

WARM = """\
import dis, json, sys
from cgirt.runner import forkmode, sandbox
def specialised(function):  # RESUME is quickened at the first call (3.13): not a sign
    return [i.opname for i in dis.get_instructions(function, adaptive=True)
            if i.opname not in dis.opmap and not i.opname.startswith("RESUME")]
print("Content-Type: application/json")
print()
print(json.dumps({f.__name__: specialised(f) for f in (forkmode._answer, sandbox.run_script)}))
"""

TRACES = """\
import json, os, sys
print("Content-Type: application/json")
print()
print(json.dumps({
    "environ": sorted(k for k, v in os.environ.items() if "warm-up" in v),
    "path": [p for p in sys.path if "warm-up" in p],
    "cwd": os.getcwd(),
}))
"""


@pytest.mark.parametrize("warmed", [True, False])
def test_a_child_finds_the_request_path_warm_already(
        in_process: StartRunner, monkeypatch: pytest.MonkeyPatch, warmed: bool) -> None:
    """The interpreter specialises a function's bytecode after its first calls (writing to
    the code object); a child calls the request path's functions once, so it finds them
    specialised only if its template ran them before the fork."""
    if not warmed:
        monkeypatch.setattr(CgiApp, "_warm_fork", lambda self, answer: None)
    runner = in_process({"warm.py": WARM}, mode="fork")
    resp = runner.request(cgi_params("/cgi-bin/warm.py"))
    assert resp.status == 200, resp.stdout
    specialised: dict[str, list[str]] = json.loads(resp.body)
    assert all(specialised.values()) is warmed, specialised


def test_the_warm_up_leaves_no_trace_a_script_or_the_site_can_see(in_process: StartRunner) -> None:
    runner = in_process({"traces.py": TRACES}, mode="fork", access_log=True)
    resp = runner.request(cgi_params("/cgi-bin/traces.py"))
    assert resp.status == 200, resp.stdout
    seen: dict[str, Any] = json.loads(resp.body)
    assert seen == {"environ": [], "path": [], "cwd": str(runner.site / "cgi-bin")}
    logs = runner.site / ".cgirt" / "logs"
    assert "warm-up" not in "".join(p.read_text() for p in logs.iterdir() if p.is_file())
    # A request puts the worker's signal handlers back: the template's own (children reaped
    # by the kernel) must hold after its warm-up, or every child stays a zombie.
    template = runner.app.forks._template
    wait_for(lambda: not Path(f"/proc/{template}/task/{template}/children").read_text().split(),
             15, "the template's children reaped, zombies too")


def test_a_template_whose_warm_up_fails_still_serves(
        in_process: StartRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(app_module, "WARM_UP_SCRIPT", str(tmp_path / "missing.cgi"))
    runner = in_process({"warm.py": WARM}, mode="fork")
    resp = runner.request(cgi_params("/cgi-bin/warm.py"))
    assert resp.status == 200, resp.stdout


@pytest.mark.parametrize("unreadable", ["missing", "directory", "no-access"])
def test_a_warm_up_script_the_site_cannot_read_leaves_its_logs_alone(
        in_process: StartRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        unreadable: str) -> None:
    """cgirt installed by root with umask 077: a site's worker cannot read the package's
    warm-up script. Its children are only slower; the site's error log has nothing of it."""
    script = tmp_path / "pkg" / "warm-up.cgi"
    script.parent.mkdir()
    if unreadable == "directory":
        script.mkdir()  # stat works, reading fails, as for a file of mode 0600 not ours
    elif unreadable == "no-access":
        script.write_text("print('Content-Type: text/plain')\nprint()\n")
        opened = open  # noqa: SIM115 - the runner's own opens, this one refused

        def refused(path: Any, *args: Any, **kwargs: Any) -> Any:
            if str(path) == str(script):
                raise PermissionError(13, "Permission denied", str(path))
            return opened(path, *args, **kwargs)
        monkeypatch.setattr("builtins.open", refused)
    monkeypatch.setattr(app_module, "WARM_UP_SCRIPT", str(script))
    runner = in_process({"warm.py": WARM}, mode="fork", access_log=True)
    resp = runner.request(cgi_params("/cgi-bin/warm.py"))
    assert resp.status == 200, resp.stdout
    logs = runner.site / ".cgirt" / "logs"
    text = "".join(p.read_text() for p in logs.iterdir() if p.is_file())
    assert "warm" not in text.replace("/cgi-bin/warm.py", ""), text


LEAVES = """\
import json
json.cgirt_leftover = True
print("Content-Type: text/plain")
print()
print("left")
"""

REDIRECTS = """\
print("Location: /cgi-bin/leaves.py")
print()
"""


@pytest.mark.parametrize("mode, script", [("persistent", "leaves.py"), ("fork", "leaves.py"),
                                          ("fork", "redirects.py")])
def test_a_child_leaves_the_state_its_script_changed_even_after_a_redirect(
        in_process: StartRunner, mode: str, script: str) -> None:
    """A worker puts the state back after a script, and says what it could not (a library
    module's attribute: the worker is replaced); a fork-mode child exits after the response,
    so puts nothing back, nor after the script of an internal redirect, run there too."""
    runner = in_process({"leaves.py": LEAVES, "redirects.py": REDIRECTS}, mode=mode)
    try:
        resp = runner.request(cgi_params(f"/cgi-bin/{script}"))
    finally:
        vars(json).pop("cgirt_leftover", None)  # in persistent mode, set in this process
    assert resp.status == 200 and resp.body == b"left\n", resp.stdout
    logs = runner.site / ".cgirt" / "logs"
    log = "".join(p.read_text() for p in logs.iterdir() if p.is_file())
    assert ("changed json.cgirt_leftover" in log) is (mode == "persistent"), log
