"""A host worker's app: the runner's CgiApp, told by the host master's activity table, not by
a byte the runner's master shares, when to make its fork-mode template and whom to tell."""

from __future__ import annotations

import os
from collections.abc import Callable

from cgirt.config import RunnerConfig
from cgirt.host.worker import ActivityTable, HostApp
from cgirt.runner.app import CgiApp
from tests.support.fcgi import cgi_params
from tests.support.procs import children_of
from tests.unit.runner.conftest import StartRunner, in_process  # noqa: F401 - the fixture

PIDS = """\
import os
print("Content-Type: text/plain")
print()
print(os.getpid(), os.getppid())
"""


def host_app(activity: ActivityTable, slot: int,
             fork_template: bool) -> Callable[[RunnerConfig], CgiApp]:
    def make(config: RunnerConfig) -> CgiApp:
        return HostApp(config, slot, activity, fork_template)
    return make


def test_a_site_in_fork_mode_waits_for_the_masters_word_then_tells_it(
        in_process: StartRunner) -> None:  # noqa: F811 - the fixture
    """The runner's own app makes its template at boot when the mode is fork; a host worker
    only when the master says so, and notes the first use in the activity table."""
    activity = ActivityTable(4)
    before = set(children_of(os.getpid()))
    runner = in_process({"pids.py": PIDS}, mode="fork",
                        make_app=host_app(activity, 2, fork_template=False))
    assert set(children_of(os.getpid())) == before  # no template at boot
    assert activity.get(2)[1] is False
    resp = runner.request(cgi_params("/cgi-bin/pids.py"))
    assert resp.status == 200, resp.stdout
    pid, parent = map(int, resp.body.split())
    assert pid != os.getpid() and set(children_of(os.getpid())) - before == {parent}
    assert activity.get(2)[1] is True  # the master starts the site's next workers with one
    assert [activity.get(slot)[1] for slot in (0, 1, 3)] == [False] * 3


def test_a_host_worker_makes_its_template_at_boot_when_the_master_says_so(
        in_process: StartRunner) -> None:  # noqa: F811 - the fixture
    activity = ActivityTable(2)
    before = set(children_of(os.getpid()))
    in_process({"pids.py": PIDS}, mode="persistent",
               make_app=host_app(activity, 1, fork_template=True))
    assert len(set(children_of(os.getpid())) - before) == 1  # the template, before any request
    assert activity.get(1)[1] is False  # nothing to tell: the master knew
