"""`cgirt reopen-logs` and `cgirt reload`: their arguments, messages and exit statuses, run
in-process on real site directories (tests/integration/test_logs.py signals real runners)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from cgirt.cli import main
from cgirt.errors import ExitStatus


def pid_file(site: Path, text: str) -> None:
    (site / ".cgirt").mkdir(parents=True, exist_ok=True)
    (site / ".cgirt" / "runner.pid").write_text(text)


@pytest.mark.parametrize("command", ["reopen-logs", "reload"])
def test_at_least_one_site_is_needed(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command])
    assert exited.value.code == ExitStatus.USAGE
    err = capsys.readouterr().err
    assert err == (f"cgirt {command}: error: the following arguments are required: SITE\n")


def test_both_are_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "reopen-logs" in out and "reload" in out


@pytest.mark.parametrize("command", ["reopen-logs", "reload"])
def test_a_site_without_a_runner_is_skipped_quietly(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / ".cgirt").mkdir(parents=True)
    assert main([command, str(tmp_path / "a"), str(tmp_path / "b")]) == ExitStatus.OK
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("command", ["reopen-logs", "reload"])
def test_each_refusal_is_one_line_and_the_status_says_refused(
        command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait(timeout=30)
    sites = {name: tmp_path / name for name in ("init", "garbage", "dead", "idle")}
    for site in sites.values():
        site.mkdir()
    pid_file(sites["init"], "1\n")
    pid_file(sites["garbage"], "not a pid\n")
    pid_file(sites["dead"], f"{gone.pid}\n")
    missing = tmp_path / "missing"
    argv = [command, *map(str, sites.values()), str(missing)]
    assert main(argv) == ExitStatus.REFUSED == 5
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"cgirt: {sites['init']}: not signalled: runner.pid holds no process id",
        f"cgirt: {sites['garbage']}: not signalled: runner.pid holds no process id",
        f"cgirt: {sites['dead']}: not signalled: runner.pid names pid {gone.pid}, which is "
        "not running",
        f"cgirt: {missing}: not signalled: no such site directory",
    ]


def test_a_runner_pid_that_is_no_plain_file_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / ".cgirt").mkdir()
    (tmp_path / ".cgirt" / "runner.pid").symlink_to("/proc/self/stat")  # a pid at its start
    assert main(["reopen-logs", str(tmp_path)]) == ExitStatus.REFUSED
    assert capsys.readouterr().err == (f"cgirt: {tmp_path}: not signalled: runner.pid is "
                                       "not a plain file\n")
