"""The unit seam of the request path: a site's scripts run by a CgiApp in this process."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.inprocess import InProcessRunner

StartRunner = Callable[..., InProcessRunner]


@pytest.fixture
def in_process(tmp_path: Path) -> Iterator[StartRunner]:
    """`in_process({"name.py": source, ...}, **settings)`: a site in tmp_path with those
    scripts in cgi-bin/ (executable, with this interpreter's shebang, so exec mode runs
    them too), and a booted in-process runner for it, stopped after the test."""
    started: list[InProcessRunner] = []

    def start(scripts: dict[str, str], **settings: Any) -> InProcessRunner:
        site = tmp_path / f"site-{len(started)}"
        (site / "cgi-bin").mkdir(parents=True)
        (site / "htdocs").mkdir()
        for name, source in scripts.items():
            path = site / "cgi-bin" / name
            path.write_text(f"#!{sys.executable}\n{source}")
            path.chmod(0o755)
        runner = InProcessRunner(site, **settings)
        runner.start()
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop()
