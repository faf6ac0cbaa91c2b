"""Forced stats: the same answer as os.stat, asked of the file's server (see the mount test in
tests/integration/test_multihost.py for what the attribute cache hides)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cgirt.runner import freshness
from cgirt.runner.cache import signature


def test_a_forced_stat_is_an_ordinary_stat_result(tmp_path: Path) -> None:
    f = tmp_path / "x.py"
    f.write_text("print()\n")
    forced, plain = freshness.forced_stat(str(f)), os.stat(f)
    assert signature(forced) == signature(plain)
    assert (forced.st_mode, forced.st_nlink, forced.st_uid) == (plain.st_mode, plain.st_nlink,
                                                                plain.st_uid)
    assert forced.st_ctime == pytest.approx(plain.st_ctime)


def test_a_missing_file_raises_as_os_stat_does(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        freshness.forced_stat(str(tmp_path / "nothing"))


def test_the_epoch_is_shared_with_a_forked_worker() -> None:
    epoch = freshness.PublishEpoch()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker: waits for the master's bump, reports what it reads
        os.read(r, 1)
        os._exit(epoch.read())
    epoch.bump()
    epoch.bump()
    os.write(w, b"x")
    _, status = os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    assert os.waitstatus_to_exitcode(status) == 2
