"""Whether a pid is this site's runner master, by facts the site's owner cannot forge.

runner.pid lies in the site's tree, so its owner (or any script of the site) can write any
pid there, while whoever signals it (the FTP gateway, `cgirt reopen-logs` from logrotate)
may be root. What the owner cannot write: who runs the process (/proc/PID/status) and, for
a process not his, its command line, parsed as the cgirt CLI parses it, with the files it
names. A genuine master runs as the caller's user: root in an admin install (`cgirt serve`
and `cgirt host` masters stay root), everything as one user in a plain one.
"""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .configfile import ConfigFile
from .errors import ConfigError, RunnerRefused
from .site import HOST_SITE_RELOAD_SIGNAL, reload_request_path, runner_pid_path
from .sitefiles import open_file

SERVE = "serve"
HOST = "host"  # a master of many sites: the site's reload request file says which
PID_MAX_LIMIT = 4 * 1024 * 1024  # Linux's highest pid_max


def runner_pid(site: Path) -> int | None:
    """The pid of the master serving this site now, or None."""
    try:
        pid = pid_in_file(site)
        if pid is not None:
            master_kind(pid, site)
    except RunnerRefused:
        return None
    return pid


def pid_in_file(site: Path) -> int | None:
    """The pid runner.pid holds; None without one (no runner has served the site, or
    it stopped); RunnerRefused when it is no plain file holding a pid."""
    try:
        fd = open_file(site, runner_pid_path(site), os.O_RDONLY)  # root: no link followed
    except FileNotFoundError:
        return None
    except OSError:
        raise RunnerRefused("runner.pid is not a plain file") from None
    try:
        pid = int(os.read(fd, 32).strip())
    except (OSError, ValueError):
        pid = 0
    finally:
        os.close(fd)
    if not 1 < pid <= PID_MAX_LIMIT:  # beyond it, no C int: pidfd_open would overflow
        raise RunnerRefused("runner.pid holds no process id")
    return pid


def open_master(site: Path) -> tuple[int, int, str] | None:
    """(pid, pidfd, SERVE or HOST) of the master serving `site`, the caller to close the
    pidfd; None without a runner.pid; RunnerRefused, with nothing opened, for any other.

    The pidfd is opened before the checks and is what to signal after them: were the pid
    reused in between, a signal would go to the process checked (gone), not the new one."""
    pid = pid_in_file(site)
    if pid is None:
        return None
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        raise _refused(pid, "is not running") from None
    except FileNotFoundError:
        # A thread's id: /proc has it, but a signal to it would go to its whole process.
        raise _refused(pid, "is not a process (a thread of one?)") from None
    except (OSError, AttributeError) as err:
        # No pidfd (ENOSYS: before Linux 5.3; AttributeError: a Python built without it),
        # or none to spare (EMFILE): without one a reused pid could take the signal.
        why = getattr(err, "strerror", None) or "no pidfd_open"
        raise _refused(pid, f"cannot be signalled safely here ({why})") from None
    try:
        return pid, pidfd, master_kind(pid, site)
    except BaseException:
        os.close(pidfd)
        raise


def request_host_reload(site: Path) -> None:
    """Before a host master's HOST_SITE_RELOAD_SIGNAL: which of its sites to reload (the
    site's reload request file; root: a link planted there is not followed)."""
    try:
        os.close(open_file(site, reload_request_path(site), os.O_WRONLY | os.O_CREAT))
    except OSError as err:
        raise RunnerRefused(f"cannot make the reload request ({err.strerror})") from None


@dataclass
class Signalled:
    """What signal_sites did: each master signalled once, with the sites it serves."""

    masters: dict[int, list[Path]] = field(default_factory=dict)
    refused: list[tuple[Path, str]] = field(default_factory=list)  # site, why: not signalled
    idle: list[Path] = field(default_factory=list)  # no runner.pid: no runner to tell


def signal_sites(sites: Sequence[Path], signum: signal.Signals) -> Signalled:
    """Send `signum` to the verified runner master of each site, once per master (a `cgirt
    host` master serves many). SIGHUP asks for the sites' workers to be replaced: a host
    master gets the sites' reload request files and HOST_SITE_RELOAD_SIGNAL instead (its
    SIGHUP would re-read its whole configuration)."""
    done = Signalled()
    pidfds: dict[int, int] = {}
    sent: dict[int, int] = {}  # what a master gets, where it is not `signum`
    try:
        for site in sites:
            if not site.is_dir():
                done.refused.append((site, "no such site directory"))
                continue
            try:
                opened = open_master(site)
                if opened is None:
                    done.idle.append(site)
                    continue
                pid, pidfd, kind = opened
                if pid in pidfds:
                    os.close(pidfd)
                else:
                    pidfds[pid] = pidfd
                if kind == HOST and signum == signal.SIGHUP:
                    request_host_reload(site)
                    sent[pid] = HOST_SITE_RELOAD_SIGNAL
            except RunnerRefused as err:
                done.refused.append((site, str(err)))
                continue
            done.masters.setdefault(pid, []).append(site)
        for pid, served in list(done.masters.items()):
            try:
                signal.pidfd_send_signal(pidfds[pid], sent.get(pid, signum))
            except OSError as err:
                del done.masters[pid]
                done.refused.extend((site, f"runner.pid names pid {pid}, which could not be "
                                     f"signalled ({err.strerror})") for site in served)
    finally:
        for pidfd in pidfds.values():
            os.close(pidfd)
    return done


def master_kind(pid: int, site: Path) -> str:
    """SERVE or HOST when `pid` is a master serving `site`; else RunnerRefused says why."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").is_dir():
        # Nothing else tells a runner from any process the owner names; the gateway may be
        # root, so the pid file alone is never enough.
        raise _refused(pid, "cannot be checked here (no /proc)")
    try:
        cmdline = (proc / "cmdline").read_bytes()
        # Not text: its Name line is whatever bytes the process chose to call itself.
        status = (proc / "status").read_bytes().decode("ascii", "replace")
        cwd = Path(os.readlink(proc / "cwd"))
    except FileNotFoundError:
        raise _refused(pid, "is not running") from None
    except OSError:
        raise _refused(pid, "cannot be inspected") from None
    if _parent_cmdline(_status_field(status, "PPid:")) == cmdline:
        # A master's zygote, workers and templates are forks with its command line, and run
        # as root until (if ever) they drop to the site's owner; not theirs to take signals.
        raise _refused(pid, "is a fork of a runner, not its master")
    argv = [os.fsdecode(a) for a in cmdline.split(b"\0")[:-1]]
    uid = _one_uid(pid, [int(u) for u in _status_field(status, "Uid:")], site)
    command = cgirt_command(argv)
    if command is None or command[0] not in (SERVE, HOST):
        raise _refused(pid, "is not a cgirt runner")
    kind, args = command
    if uid != os.geteuid():
        # The owner's own process: its command line is his to write, so only `--site` is
        # taken from it (a --config would make the gateway read a file he chose); signalling
        # it gives him nothing he could not do himself.
        site_flag = _option(pid, args, "--site")
        if kind != SERVE or site_flag is None:
            raise _refused(pid, "is not a runner of this site")
        served = [cwd / site_flag]
    else:
        try:
            served = _served_sites(pid, kind, args, cwd)
        except ConfigError:  # a [sites.NAME] missing, a table that is not one
            raise _refused(pid, "names a configuration it does not serve this site from") \
                from None
    mine = os.path.realpath(site)
    if not any(os.path.realpath(s) == mine for s in served):
        raise _refused(pid, "is a cgirt runner of another site")
    return kind


def cgirt_command(argv: list[str]) -> tuple[str, list[str]] | None:
    """(subcommand, its arguments) of a `cgirt ...` or `python [options] -m cgirt ...`
    command line (an installed `cgirt` script runs as `python /path/to/cgirt ...`)."""
    rest = argv[1:] if argv and os.path.basename(argv[0]) == "cgirt" else _after_python(argv[1:])
    if not rest:
        return None
    return rest[0], rest[1:]


def _after_python(args: list[str]) -> list[str] | None:
    """What follows `-m cgirt`, or a script named cgirt, past the interpreter's options
    (`-X utf8` from the CLI's restart in UTF-8 mode)."""
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith("-m"):
            module, after = (args[i + 1] if i + 1 < len(args) else "", i + 2) if arg == "-m" \
                else (arg[2:], i + 1)
            return args[after:] if module == "cgirt" else None
        if arg.startswith("-c"):
            return None
        if not arg.startswith("-") or arg == "-":
            return args[i + 1:] if os.path.basename(arg) == "cgirt" else None
        i += 2 if arg in ("-X", "-W") else 1
    return None


def _served_sites(pid: int, kind: str, args: list[str], cwd: Path) -> list[Path]:
    """The site directories a master started by the gateway's own user serves, from its
    command line and the configuration files it names (as the CLI reads them: relative
    paths from the process's working directory, a flag over the file)."""
    config = _option(pid, args, "--config")
    if kind == SERVE:
        site_flag = _option(pid, args, "--site")
        if site_flag is not None:
            return [cwd / site_flag]
        if config is None:
            return []
        values = _config(pid, cwd / config).runner_values(_option(pid, args, "--name"))
        return [cwd / values["site"]] if isinstance(values.get("site"), str) else []
    if config is None:
        return []
    main = _config(pid, cwd / config)
    from .host.config import drop_in_files, host_settings

    tables = [{**main.table("runner"), **main.table(f"sites.{name}")}
              for name in main.site_names()]
    for drop_in in drop_in_files(main, host_settings(main)):
        try:
            tables.append({**main.table("runner"), **_config(pid, drop_in).data})
        except RunnerRefused:
            continue  # a broken drop-in: the master does not serve that site either
    return [cwd / t["site"] for t in tables if isinstance(t.get("site"), str)]


def _config(pid: int, path: Path) -> ConfigFile:
    try:  # a FIFO or a device would block or never end: only a regular file is read
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(f"{path}: not a regular file")
        return ConfigFile(path)
    except (OSError, ConfigError):
        # The file's problem stays in the gateway's log's reach, not the client's.
        raise _refused(pid, "names a configuration file that cannot be read") from None


def _option(pid: int, args: list[str], name: str) -> str | None:
    """The value of `name` as argparse gives it (the last one wins). An abbreviation of
    it (argparse takes `--si` for `--site`) is refused: a genuine master's unit spells
    options out, and reading one kind of spelling only could name the wrong value."""
    value = None
    for i, arg in enumerate(args):
        key, equals, attached = arg.partition("=")
        if key == name:
            if equals:
                value = attached
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                value = args[i + 1]
            else:  # argparse takes `--site -1` as a value: a guess could name the wrong one
                raise _refused(pid, "has a command line that cannot be read unambiguously")
        elif len(key) > 2 and key.startswith("--") and name.startswith(key):
            raise _refused(pid, "has a command line that cannot be read unambiguously")
    return value


def _status_field(status: str, key: str) -> list[str]:
    """The values of a /proc/PID/status line (`Uid:`, `PPid:`), [] without it."""
    for line in status.splitlines():
        if line.startswith(key):
            return line.split()[1:]
    return []


def _parent_cmdline(ppid: list[str]) -> bytes | None:
    try:
        return Path(f"/proc/{int(ppid[0])}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None  # no parent to read (0: started by the kernel)


def _one_uid(pid: int, uids: list[int], site: Path) -> int:
    """The one user the process runs as: the gateway's own, or the site owner's."""
    if len(set(uids)) != 1:
        # A set-user-ID program: its command line is its caller's to choose.
        raise _refused(pid, "runs with mixed user ids")
    uid = uids[0]
    if uid not in (os.geteuid(), os.stat(site).st_uid):
        raise _refused(pid, "belongs to another user")
    return uid


def _refused(pid: int, why: str) -> RunnerRefused:
    return RunnerRefused(f"runner.pid names pid {pid}, which {why}")
