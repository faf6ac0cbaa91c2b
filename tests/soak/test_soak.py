"""The short soak for CI: the same run as `python -m tests.soak`, about a minute long in all
(CGIRT_SOAK_SECONDS changes it), split between a runner per site and one `cgirt host` for
both sites. Every invariant of issue 6 must be 0."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .soak import Settings, Soak
from .stack import HostStack, Stack

pytestmark = [pytest.mark.soak, pytest.mark.integration]


@pytest.mark.parametrize("kind", [Stack, HostStack], ids=["runners", "host"])
def test_soak_two_sites_under_load_uploads_and_faults(tmp_path: Path, kind: type[Stack]) -> None:
    duration = float(os.environ.get("CGIRT_SOAK_SECONDS", "60")) / 2
    stack = kind(tmp_path / "soak")
    lines: list[str] = []
    try:
        stack.start()
        # A gateway restart mid-upload at least once in the shorter run as well.
        settings = Settings(duration=duration, gateway_restart_interval=min(25.0, duration / 2))
        report = Soak(stack, settings, log=lines.append).run()
    finally:
        stack.stop()  # idempotent: the run stops everything itself and checks how
    summary = f"{report.table()}\n{report.resource_summary()}\n" + "\n".join(lines[-50:])
    print(summary)
    assert not report.violations(), summary
    c = report.counts
    # The load was really held: uploads went through, faults were really injected.
    assert c["acked"] >= duration * 0.8, summary
    assert c["versioned_checked"] >= duration * 20, summary
    assert c["broken_refused"] and c["clients_killed"] and c["workers_killed"], summary
    assert all(c[f"hostile_{s}"] for s in ("loop.py", "exit.py", "bomb.py", "huge.py")), summary
    if duration >= 20:
        assert c["gateway_restarts_term"] + c["gateway_restarts_kill"] >= 1, summary
