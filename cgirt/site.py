"""The on-disk layout of a site and the generation contract between gateway and runner.

A site is a directory owned by one site owner::

    SITE/cgi-bin/          scripts (the default cgi root; subdirectories included)
    SITE/htdocs/           static files, DOCUMENT_ROOT (optional: none without it)
    SITE/.cgirt/           runtime state, never served and never visible over FTP
        generation         an integer, bumped by every publish, delete or rename
        runner.pid         pid of the runner master serving this site (SITE RELOAD)
        staging/           uploads in transit (same filesystem, so os.replace is atomic)
        logs/error.log     scripts' stderr and tracebacks, one line per record
        logs/slow.log      the Python stack of requests past slowlog_timeout or timed out
        status.sock        the runner's status (admin only: mode 0600 by default)
        logs/access.log    a line per request: Combined Log Format and the runner's extras
        logs/NAME.log.1    rotated logs, newest first (log_max_size, log_backups)
        logs/deploy.log    the gateway's validation and publish results

Several runner hosts serving the site from a shared filesystem each name themselves
(`host_name`), and their own files carry that name, so that no two hosts write, rotate or
replace the same file: `runner.NAME.pid`, `status.NAME.sock`, `logs/error.NAME.log`,
`logs/access.NAME.log`, `logs/slow.NAME.log` (`per_host`).

The runner does not depend on the gateway for correctness (every request compares stat
signatures); the generation is the gateway's guarantee that a publish acknowledged with
226 is seen by the very next request, whatever the filesystem's timestamp granularity.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import signal
from pathlib import Path

from .sitefiles import SymlinkRefused, open_dir, open_file

_log = logging.getLogger("cgirt.error")

STATE_DIR = ".cgirt"
CGI_ROOT = "cgi-bin"
DOCUMENT_ROOT = "htdocs"

_PYTHON_NAME = re.compile(rb"python(3(\.[0-9]+)?)?")
_ENV_OPTIONS_WITH_VALUE = {b"-u", b"--unset", b"-C", b"--chdir"}


def is_python(path: str, first_line: bytes) -> bool:
    """Whether a script is Python: the one rule for the runner (run it in-process) and the
    gateway (compile it before publishing). A `.py` name, or a shebang whose interpreter is
    python, python3 or python3.N by basename, directly or as `env`'s command: a Perl at
    /opt/mypython/bin/perl is not Python, whatever its path says."""
    if path.endswith(".py"):
        return True
    if not first_line.startswith(b"#!"):
        return False
    words = first_line[2:].split(b"\n", 1)[0].split()
    if not words:
        return False
    command = os.path.basename(words[0])
    if command == b"env":
        command = _env_command(words[1:])
    return _PYTHON_NAME.fullmatch(command) is not None


def _env_command(args: list[bytes]) -> bytes:
    """The program `env ARGS` runs: its first argument that is not an option or NAME=VALUE."""
    skip_next = False
    for arg in args:
        if skip_next:
            skip_next = False
        elif arg in _ENV_OPTIONS_WITH_VALUE:
            skip_next = True
        elif not arg.startswith(b"-") and b"=" not in arg:
            return os.path.basename(arg)
    return b""


def state_dir(site: Path) -> Path:
    return site / STATE_DIR


def generation_path(site: Path) -> Path:
    return site / STATE_DIR / "generation"


def logs_dir(site: Path) -> Path:
    return site / STATE_DIR / "logs"


def per_host(name: str, host: str) -> str:
    """A runner's own file name on a host named `host`: error.log → error.HOST.log."""
    if not host:
        return name
    stem, _, ext = name.rpartition(".")
    return f"{stem}.{host}.{ext}"


def error_log_path(site: Path, host: str = "") -> Path:
    return logs_dir(site) / per_host("error.log", host)


def slow_log_path(site: Path, host: str = "") -> Path:
    return logs_dir(site) / per_host("slow.log", host)


def status_socket_path(site: Path, host: str = "") -> Path:
    return site / STATE_DIR / per_host("status.sock", host)


def access_log_path(site: Path, host: str = "") -> Path:
    return logs_dir(site) / per_host("access.log", host)


RUNNER_LOGS = ("error.log", "access.log", "slow.log")
"""The logs a runner writes (one set per host when several share the site)."""
SITE_LOGS = (*RUNNER_LOGS, "deploy.log")
"""Every log of a site, rotated by the runner's master; the FTP gateway shows them."""
HOST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,62}")


def rotated_logs(host: str, access_log: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The logs a runner's master rotates, and those it keeps in existence: one of several
    hosts rotates only its own (deploy.log is every host's to see)."""
    logs = tuple(per_host(n, host) for n in RUNNER_LOGS) if host else SITE_LOGS
    written = ("error.log", "access.log") if access_log else ("error.log",)
    return logs, tuple(per_host(n, host) for n in written)


def deploy_log_path(site: Path) -> Path:
    return logs_dir(site) / "deploy.log"


def staging_dir(site: Path) -> Path:
    return site / STATE_DIR / "staging"


def runner_pid_path(site: Path, host: str = "") -> Path:
    return site / STATE_DIR / per_host("runner.pid", host)


def reload_request_path(site: Path) -> Path:
    """Made by SITE RELOAD (and `cgirt reload`) before HOST_SITE_RELOAD_SIGNAL: a master of
    many sites (`cgirt host`) replaces the workers of the sites that have it, and only theirs."""
    return site / STATE_DIR / "reload"


# Not SIGHUP, which makes a host master re-read its whole configuration: a tenant's reload
# must not apply an admin's edit that is not finished.
HOST_SITE_RELOAD_SIGNAL = signal.SIGUSR2


def ensure_state(site: Path) -> None:
    """Create the state directories; private to the site owner. One that is a symbolic
    link is refused (`sitefiles.SymlinkRefused`): root must not follow it."""
    site.mkdir(parents=True, exist_ok=True)
    for d in (state_dir(site), logs_dir(site), staging_dir(site)):
        os.close(open_dir(site, d, create=True))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_generation(site: Path) -> int:
    """The current generation; 0 when there is none, or when the owner planted something
    else there (a link, a FIFO that would hang every publish, /dev/zero): root reads it
    through no link, and at most a line, and the next bump replaces it."""
    try:
        fd = open_file(site, generation_path(site), os.O_RDONLY)
    except FileNotFoundError:
        return 0
    except SymlinkRefused as exc:
        _log.warning("%s", exc.strerror)
        return 0
    try:
        return int(os.read(fd, 64).strip() or 0)
    except ValueError:
        return 0
    finally:
        os.close(fd)


def bump_generation(site: Path) -> int:
    """Durably increment the site generation and return the new value.

    Written by rename so a reader never sees a partial number; serialised by a lock
    because several gateway sessions may publish at once.
    """
    ensure_state(site)
    # Through the state directory's descriptor, no link followed: the gateway is root here,
    # and the owner can plant generation.PID.tmp -> /etc/shadow.
    state = open_dir(site, state_dir(site))
    try:
        lock_fd = open_file(site, state_dir(site) / "generation.lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(lock_fd, fcntl.LOCK_EX)
            value = read_generation(site) + 1
            tmp = f"generation.{os.getpid()}.tmp"
            try:
                os.unlink(tmp, dir_fd=state)  # a leftover (or a planted link), never its target
            except FileNotFoundError:
                pass
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=state)
            try:
                os.write(fd, b"%d\n" % value)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, "generation", src_dir_fd=state, dst_dir_fd=state)
            os.fsync(state)
            return value
        finally:
            os.close(lock_fd)
    finally:
        os.close(state)


def own_like_site(path: Path, site: Path) -> None:
    """A file written by a process running as root (the gateway) belongs to the site's
    owner, whose runner works as that user."""
    if os.geteuid() != 0:
        return
    st = os.stat(site)
    if st.st_uid != 0:
        os.chown(path, st.st_uid, st.st_gid, follow_symlinks=False)


def readable_by_others(site: Path, private_dirs: list[Path]) -> list[Path]:
    """The private directories (cgi roots) that other local users, and so other sites'
    workers, can reach: the site and the directory both searchable by "other".

    Dropping to the owner's uid only separates sites if the modes do too: the gateway
    publishes scripts 0755, and a 0755 cgi-bin under a 0755 site hands their source
    (passwords in config modules included) to every other site's scripts.
    """
    if not os.stat(site).st_mode & 0o001:
        return []
    return [d for d in private_dirs if d.is_dir() and os.stat(d).st_mode & 0o001]
