"""What SITE CHECK and SITE RELOAD do, apart from FTP: plain functions on a site."""

from __future__ import annotations

import logging
import os
import signal
from dataclasses import dataclass
from pathlib import Path

from cgirt.runnerproc import signal_sites
from cgirt.site import is_python, state_dir
from cgirt.sitefiles import open_file

from .errors import ReloadRefused
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


def reload_runner(site: Path) -> tuple[bool, str]:
    """Ask the site's runner master to replace its workers (cgirt.runnerproc.signal_sites);
    ReloadRefused, with nothing signalled, when runner.pid names anything else."""
    done = signal_sites([site], signal.SIGHUP)
    if done.refused:
        _, why = done.refused[0]
        err = ReloadRefused(f"SITE RELOAD refused: {why}; nothing was signalled.")
        log.warning("%s: %s", site, err.message)  # the admin sees who tried what
        raise err
    if not done.masters:
        return False, ("No runner is serving this site right now; "
                       "the next request will load the current files anyway.")
    (pid,) = done.masters
    return True, f"Runner (pid {pid}) asked to reload its workers."
