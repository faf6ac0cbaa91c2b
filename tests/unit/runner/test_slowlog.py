"""The slow log's entry: the site's frames as a traceback reads, relative to the site."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from types import FrameType

import pytest

from cgirt.runner.slowlog import SlowLog

PARAMS = {"REQUEST_METHOD": "GET", "REQUEST_URI": "/cgi-bin/app.py?x=1"}


def frame_inside(site: Path) -> FrameType:
    """A real frame two calls deep in a module of the site, called from here (the runner)."""
    (site / "cgi-bin").mkdir(parents=True)
    script = site / "cgi-bin" / "app.py"
    script.write_text("import sys\n\ndef inner():\n    return sys._getframe()\n\n"
                      "def outer():\n    return inner()\n")
    namespace: dict[str, object] = {}
    exec(compile(script.read_text(), str(script), "exec"), namespace)
    frame = namespace["outer"]()  # type: ignore[operator]
    assert isinstance(frame, FrameType)
    return frame


def test_entry_shows_the_sites_frames_only(tmp_path: Path) -> None:
    site = tmp_path / "site"
    frame = frame_inside(site)
    slow = SlowLog(site / ".cgirt" / "logs" / "slow.log", site)
    slow.open()
    slow.write("slow request", frame, {**PARAMS, "SCRIPT_FILENAME": f"{site}/cgi-bin/app.py"}, 2.345)
    text = slow.path.read_text()
    assert "slow request after 2.3 s: GET /cgi-bin/app.py?x=1\nscript: cgi-bin/app.py\n" in text
    assert ('Traceback (most recent call last):\n'
            '  File "cgi-bin/app.py", line 7, in outer\n    return inner()\n'
            '  File "cgi-bin/app.py", line 4, in inner\n    return sys._getframe()\n') in text
    assert "test_slowlog" not in text and "pytest" not in text  # the caller's frames are not the site's
    assert text.endswith("\n\n")


def test_entry_without_site_frames_says_so(tmp_path: Path) -> None:
    site = tmp_path / "site"
    slow = SlowLog(site / ".cgirt" / "logs" / "slow.log", site)
    slow.open()
    slow.write("timed out", sys._getframe(), {**PARAMS, "SCRIPT_FILENAME": "proxy:fcgi://x",
                                              "SCRIPT_NAME": "/cgi-bin/run.sh"}, 30.0)
    slow.write("timed out", None, {}, 1.0)
    text = slow.path.read_text()
    assert "timed out after 30.0 s: GET /cgi-bin/app.py?x=1\nscript: /cgi-bin/run.sh\n" in text
    assert text.count("no frame of the site's Python code was running") == 2
    assert "Traceback" not in text


def test_a_slow_log_that_cannot_be_opened_goes_to_the_runners_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    site = tmp_path / "site"
    (site / ".cgirt").mkdir(parents=True)
    (site / ".cgirt" / "logs").write_text("a file where the folder should be")
    slow = SlowLog(site / ".cgirt" / "logs" / "slow.log", site)
    with caplog.at_level(logging.WARNING, logger="cgirt.error"):
        slow.open()  # no exception: a worker still boots
        slow.write("slow request", None, PARAMS, 1.5)
    assert "cannot open the slow log" in caplog.text
    assert "slow request after 1.5 s: GET /cgi-bin/app.py?x=1" in caplog.text
