"""What SITE CHECK and SITE RELOAD do, apart from FTP: plain functions on a site."""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from cgirt.site import is_python, reload_request_path, runner_pid_path, state_dir
from cgirt.sitefiles import open_file

from .errors import ReloadRefused
from .runnerproc import HOST, master_kind
from .validate import Finding, check_source, python_files

log = logging.getLogger("cgirt.ftp")


@dataclass(frozen=True)
class CheckReport:
    checked: int
    findings: list[Finding]


def check_scripts(site: Path, start: Path, display: str) -> CheckReport:
    """Compile one script (start is a file) or every script below start (a directory).

    `display` is the client's name for `start`; findings are named the same way.
    """
    if start.is_file():
        finding = _check(site, start, display)
        return CheckReport(1, [finding] if finding else [])
    findings: list[Finding] = []
    checked = 0
    for path in python_files(start, skip=state_dir(site)):
        checked += 1
        name = "/" + path.relative_to(site).as_posix()
        finding = _check(site, path, name)
        if finding is not None:
            findings.append(finding)
    return CheckReport(checked, findings)


def _check(site: Path, path: Path, display: str) -> Finding | None:
    """check_file, reading as root the file `path` resolves to now, through no link: the
    owner may have swapped it (or a folder on the way) for a link to /etc/shadow, whose
    syntax errors would quote it, or to /dev/zero or a FIFO, since it was looked at."""
    fd = open_file(site, Path(os.path.realpath(path)), os.O_RDONLY)
    with os.fdopen(fd, "rb") as f:
        source = f.read()
    if not is_python(path.name, source[:256]):
        return None
    return check_source(source, display)


def runner_pid(site: Path) -> int | None:
    """The pid of the master serving this site now, or None."""
    try:
        pid = _pid_in_file(site)
        if pid is not None:
            master_kind(pid, site)
    except ReloadRefused:
        return None
    return pid


def _pid_in_file(site: Path) -> int | None:
    """The pid runner.pid holds; None without one (no runner has served the site, or
    it stopped); ReloadRefused when it is no plain file holding a pid."""
    try:
        fd = open_file(site, runner_pid_path(site), os.O_RDONLY)  # root: no link followed
    except FileNotFoundError:
        return None
    except OSError:
        raise ReloadRefused("SITE RELOAD refused: runner.pid is not a plain file; "
                            "nothing was signalled.") from None
    try:
        pid = int(os.read(fd, 32).strip())
    except (OSError, ValueError):
        pid = 0
    finally:
        os.close(fd)
    if pid <= 1:
        raise ReloadRefused("SITE RELOAD refused: runner.pid holds no process id; "
                            "nothing was signalled.")
    return pid


def reload_runner(site: Path) -> tuple[bool, str]:
    """Ask the site's runner master to replace its workers (SIGHUP); ReloadRefused, with
    nothing signalled, when runner.pid names anything else."""
    try:
        pid = _pid_in_file(site)
        if pid is None:
            return False, ("No runner is serving this site right now; "
                           "the next request will load the current files anyway.")
        # Opened before the checks and signalled through after them: were the pid reused
        # in between, the signal would go to the process checked (gone), not the new one.
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            raise ReloadRefused(f"SITE RELOAD refused: runner.pid names pid {pid}, which is "
                                "not running; nothing was signalled.") from None
        try:
            _signal(site, pidfd, master_kind(pid, site))
        finally:
            os.close(pidfd)
    except ReloadRefused as err:
        log.warning("%s: %s", site, err.message)  # the admin sees who tried what
        raise
    return True, f"Runner (pid {pid}) asked to reload its workers."


def _signal(site: Path, pidfd: int, kind: str) -> None:
    if kind == HOST:  # which of its sites; root: a planted link is not followed
        try:
            os.close(open_file(site, reload_request_path(site), os.O_WRONLY | os.O_CREAT))
        except OSError as err:
            raise ReloadRefused(f"SITE RELOAD refused: cannot make the reload request "
                                f"({err.strerror}); nothing was signalled.") from None
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGHUP)
    except OSError as err:
        raise ReloadRefused(f"SITE RELOAD: could not signal the runner ({err.strerror}).") \
            from None
