"""What SITE CHECK and SITE RELOAD do, apart from FTP: plain functions on a site."""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path

from cgirt.site import is_python, reload_request_path, runner_pid_path, state_dir
from cgirt.sitefiles import open_file

from .validate import Finding, check_source, python_files


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
    """The live runner's pid from runner.pid, or None.

    A pid file can outlive its process and the pid be reused; where /proc exists the
    process must look like cgirt before it is signalled.
    """
    try:
        fd = open_file(site, runner_pid_path(site), os.O_RDONLY)  # root: no link followed
        try:
            pid = int(os.read(fd, 32).strip())
        finally:
            os.close(fd)
    except (OSError, ValueError):
        return None
    if pid <= 1:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by someone else: the signal below will say so
    return pid if _looks_like_cgirt(pid) else None


def _looks_like_cgirt(pid: int) -> bool:
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").exists():
        return True  # no /proc: trust the pid file
    try:
        return b"cgirt" in cmdline.read_bytes()
    except OSError:
        return False


def reload_runner(site: Path) -> tuple[bool, str]:
    """Ask the site's runner master to replace its workers (SIGHUP)."""
    pid = runner_pid(site)
    if pid is None:
        return False, ("No runner is serving this site right now; "
                       "the next request will load the current files anyway.")
    try:  # which site, for a `cgirt host` of many; root: a planted link is not followed
        os.close(open_file(site, reload_request_path(site), os.O_WRONLY | os.O_CREAT))
    except OSError:
        pass  # a runner of this site alone replaces its workers all the same
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError as err:
        return False, f"Could not signal the runner: {err.strerror}."
    return True, f"Runner (pid {pid}) asked to reload its workers."
