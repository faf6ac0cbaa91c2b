"""Fork mode's template: warmed up once by the runner's own script, so its children start warm.

A child's cost is mostly the pages it writes, each copied from the template by the kernel;
a page fault count (a script reads its own, counted from its fork) is steady where times
are not, so the warm-up is checked side by side with a template that skipped it.
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

FAULTS = """\
import resource
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt  # this process's, since its fork
print("Content-Type: text/plain")
print()
print(faults)
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


def child_faults(runner: InProcessRunner) -> int:
    """The fewest page faults a fork-mode child met before its script ran, over a few."""
    counts = []
    for _ in range(5):
        resp = runner.request(cgi_params("/cgi-bin/faults.py"))
        assert resp.status == 200, resp.stdout
        counts.append(int(resp.body))
    return min(counts)


def test_a_child_of_a_warmed_up_template_copies_fewer_pages(
        in_process: StartRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    warm = in_process({"faults.py": FAULTS}, mode="fork")
    with monkeypatch.context() as m:
        m.setattr(CgiApp, "_warm_fork", lambda self, answer: None)  # a template as before
        cold = in_process({"faults.py": FAULTS}, mode="fork")
    warm_faults, cold_faults = child_faults(warm), child_faults(cold)
    # The later template holds a copy of the earlier one's socket: it must end first, or the
    # earlier one never reads the end of its input.
    cold.app.forks.stop()
    # Measured in this process: 620 and 688 page faults (3.11); without the warm-up, equal.
    assert warm_faults < 0.95 * cold_faults, (warm_faults, cold_faults)


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
    runner = in_process({"faults.py": FAULTS}, mode="fork")
    resp = runner.request(cgi_params("/cgi-bin/faults.py"))
    assert resp.status == 200, resp.stdout
