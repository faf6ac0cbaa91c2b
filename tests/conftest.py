from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.support.procs import LONG_LIVED, STARTED_GROUPS, children_of, group_members
from tests.support.servers import Runner

CORPUS = Path(__file__).parent / "corpus"


def make_site(root: Path) -> Path:
    """A copy of the test corpus whose Python scripts name this interpreter in their shebang."""
    site = root / "site"
    shutil.copytree(CORPUS, site)
    for script in (site / "cgi-bin").rglob("*.py"):
        lines = script.read_text().split("\n", 1)
        if lines[0].startswith("#!"):
            script.write_text(f"#!{sys.executable}\n{lines[1]}")
    return site


@pytest.fixture
def site(tmp_path: Path) -> Path:
    return make_site(tmp_path)


@pytest.fixture
def start_runner(tmp_path: Path) -> Iterator[Callable[..., Runner]]:
    started: list[Runner] = []

    def start(site: Path, *extra: str, workers: int = 2, name: str = "r") -> Runner:
        workdir = tmp_path / f"runner-{name}-{len(started)}"
        workdir.mkdir()
        runner = Runner(site, workdir, *extra, workers=workers)
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop()


@pytest.fixture(autouse=True)
def no_leaked_processes() -> Iterator[None]:
    yield
    leaked = {pgid: group_members(pgid) for pgid in STARTED_GROUPS}
    leaked = {k: v for k, v in leaked.items() if v}
    STARTED_GROUPS.clear()
    assert not leaked, f"processes left running: {leaked}"
    stray = [pid for pid in children_of(os.getpid()) if pid not in LONG_LIVED]
    assert not stray, f"child processes of the test run left behind: {stray}"
