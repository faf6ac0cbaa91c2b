"""Log files shared by several writers: reopen on the master's word, rotation by size, the
writer's own bound, and the one timestamp format."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import pytest

from cgirt.logfiles import LogFile, ReopenCounter, Rotator, StampFormatter, iso_stamp

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}$")


def test_iso_stamp_has_milliseconds_and_the_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ISO.match(iso_stamp())
    monkeypatch.setenv("TZ", "Asia/Kolkata")
    import time
    time.tzset()
    try:
        import cgirt.logfiles as lf
        lf._stamp_cache = (-1, "", "")
        assert iso_stamp(0.25) == "1970-01-01T05:30:00.250+05:30"
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
        lf._stamp_cache = (-1, "", "")
    record = logging.LogRecord("cgirt", logging.INFO, __file__, 1, "m", None, None)
    assert ISO.match(StampFormatter("%(asctime)s").format(record))


def test_a_writer_reopens_by_name_once_the_counter_moves(tmp_path: Path) -> None:
    counter = ReopenCounter()
    path = tmp_path / "error.log"
    log = LogFile(path, counter)
    log.open()
    log.write(b"one\n")
    os.rename(path, tmp_path / "error.log.1")  # as logrotate does
    log.write(b"two\n")  # not told yet: still the renamed file, nothing lost
    counter.bump()
    log.write(b"three\n")
    assert (tmp_path / "error.log.1").read_bytes() == b"one\ntwo\n"
    assert path.read_bytes() == b"three\n"


def test_the_counter_is_shared_with_forked_writers(tmp_path: Path) -> None:
    counter = ReopenCounter()
    pid = os.fork()
    if pid == 0:
        counter.bump()
        os._exit(0)
    os.waitpid(pid, 0)
    assert counter.value == 1


def test_rotation_by_size_keeps_the_backups_and_tells_writers(tmp_path: Path) -> None:
    counter = ReopenCounter()
    writer = LogFile(tmp_path / "access.log", counter)
    rotator = Rotator(tmp_path, ["access.log", "error.log"], counter, max_bytes=10, backups=2)
    for n in range(4):
        writer.write(b"x" * 11 + b"%d\n" % n)
        rotator.tick(0.0)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["access.log", "access.log.1", "access.log.2"]  # the oldest is gone
    assert (tmp_path / "access.log.1").read_bytes().endswith(b"3\n")
    assert (tmp_path / "access.log.2").read_bytes().endswith(b"2\n")
    assert (tmp_path / "access.log").read_bytes() == b""
    assert counter.value == 4
    rotator.tick(0.0)
    assert counter.value == 4  # nothing over the bound: nothing done


def test_rotation_never_follows_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "secret"
    target.write_bytes(b"s" * 100)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "error.log").symlink_to(target)
    rotator = Rotator(logs, ["error.log"], ReopenCounter(), max_bytes=10, backups=1)
    rotator.tick(0.0)
    assert target.read_bytes() == b"s" * 100 and (logs / "error.log").is_symlink()


def test_sigusr1_creates_the_renamed_files_again_and_bumps(tmp_path: Path) -> None:
    counter = ReopenCounter()
    owned: list[int] = []
    (tmp_path / "slow.log.1").write_text("renamed by logrotate\n")
    rotator = Rotator(tmp_path, ["error.log", "access.log", "slow.log", "deploy.log"], counter,
                      0, 5, owner=owned.append, always=["error.log", "access.log"])
    rotator.reopen()
    assert counter.value == 1 and len(owned) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "access.log", "error.log", "slow.log", "slow.log.1"]  # no deploy.log: never written


def test_a_writer_far_past_its_bound_pokes_then_drops_and_says_so(tmp_path: Path) -> None:
    counter = ReopenCounter()
    log = LogFile(tmp_path / "error.log", counter, max_bytes=100)
    for _ in range(30):
        log.write(b"y" * 19 + b"\n")
    assert os.read(counter.poke_r, 10) == b"!"  # once, when it passed the bound
    assert (tmp_path / "error.log").stat().st_size == 220  # stopped at twice the bound
    Rotator(tmp_path, ["error.log"], counter, max_bytes=100, backups=1).tick(0.0)
    log.write(b"after\n")
    text = (tmp_path / "error.log").read_text()
    assert re.search(r"cgirt: 19 lines dropped: error\.log grew faster", text)
    assert text.endswith("after\n")


def test_a_writer_that_cannot_reopen_keeps_its_file_and_says_stale(tmp_path: Path) -> None:
    counter = ReopenCounter()
    folder = tmp_path / "logs"
    log = LogFile(folder / "error.log", counter)
    log.write(b"one\n")
    os.rename(folder, tmp_path / "moved")
    (tmp_path / "logs").write_text("not a folder")  # reopening by path now fails
    counter.bump()
    log.write(b"two\n")
    assert log.stale
    assert (tmp_path / "moved" / "error.log").read_bytes() == b"one\ntwo\n"


def test_a_strict_reopen_that_fails_raises_and_keeps_the_old_file(tmp_path: Path) -> None:
    log = LogFile(tmp_path / "ftp.log")
    log.write(b"one\n")
    (tmp_path / "ftp.log").rename(tmp_path / "ftp.log.1")
    (tmp_path / "ftp.log").mkdir()  # reopening by path now fails
    with pytest.raises(IsADirectoryError):
        log.open(strict=True)
    assert not log.stale
    log.write(b"two\n")
    assert (tmp_path / "ftp.log.1").read_bytes() == b"one\ntwo\n"
    (tmp_path / "ftp.log").rmdir()
    log.open(strict=True)
    log.write(b"three\n")
    assert (tmp_path / "ftp.log").read_bytes() == b"three\n"
    log.close()


def test_a_missing_logs_folder_is_said_once_not_every_tick(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rotator = Rotator(tmp_path / "gone", ["error.log"], ReopenCounter(), max_bytes=10, backups=1)
    for _ in range(5):
        rotator.tick(0.0)
    assert caplog.text.count("cannot open the logs folder") == 1
    (tmp_path / "gone").mkdir()
    rotator.tick(0.0)
    (tmp_path / "gone").rmdir()
    rotator.tick(0.0)
    assert caplog.text.count("cannot open the logs folder") == 2
