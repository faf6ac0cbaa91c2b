"""The gateway's log file: the runner's LogFile, reopened at once by the serve loop."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from ftp_gateway.logfile import ReopenableFileHandler


def _log(handler: ReopenableFileHandler, message: str) -> None:
    handler.handle(logging.LogRecord("cgirt.ftp", logging.INFO, __file__, 1, message, None, None))


def test_reopen_moves_to_a_new_file_and_a_failed_one_keeps_the_old(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "ftp.log"  # its folder is created
    handler = ReopenableFileHandler(path)
    try:
        _log(handler, "one")
        assert stat.S_IMODE(path.stat().st_mode) == 0o640 & ~_umask()
        path.rename(tmp_path / "ftp.log.1")
        handler.reopen()
        _log(handler, "two")
        path.rename(tmp_path / "ftp.log.2")
        path.mkdir()
        with pytest.raises(OSError):
            handler.reopen()
        _log(handler, "three")
    finally:
        handler.close()
    assert (tmp_path / "ftp.log.1").read_text() == "one\n"
    assert (tmp_path / "ftp.log.2").read_text() == "two\nthree\n"


def test_a_link_at_the_path_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    target.write_text("")
    (tmp_path / "ftp.log").symlink_to(target)
    with pytest.raises(OSError):
        ReopenableFileHandler(tmp_path / "ftp.log")
    assert target.read_text() == ""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
