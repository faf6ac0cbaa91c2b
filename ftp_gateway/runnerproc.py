"""Whether a pid is this site's runner master, by facts the site's owner cannot forge.

runner.pid lies in the site's tree, so its owner (or any script of the site) can write any
pid there, while the gateway that signals it may be root. What the owner cannot write:
who runs the process (/proc/PID/status) and, for a process not his, its command line,
parsed as the cgirt CLI parses it, with the files it names. A genuine master runs as the
gateway's user: root in an admin install (`cgirt serve` and `cgirt host` masters stay
root), everything as one user in a plain one.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cgirt.configfile import ConfigFile
from cgirt.errors import ConfigError

from .errors import ReloadRefused

SERVE = "serve"
HOST = "host"  # a master of many sites: the site's reload request file says which


def master_kind(pid: int, site: Path) -> str:
    """SERVE or HOST when `pid` is a master serving `site`; else ReloadRefused says why."""
    proc = Path(f"/proc/{pid}")
    if not Path("/proc/self").is_dir():
        # Nothing else tells a runner from any process the owner names; the gateway may be
        # root, so the pid file alone is never enough.
        raise _refused(pid, "cannot be checked here (no /proc)")
    try:
        argv = [os.fsdecode(a) for a in (proc / "cmdline").read_bytes().split(b"\0")[:-1]]
        uids = _uids((proc / "status").read_text())
        cwd = Path(os.readlink(proc / "cwd"))
    except FileNotFoundError:
        raise _refused(pid, "is not running") from None
    except OSError:
        raise _refused(pid, "cannot be inspected") from None
    uid = _one_uid(pid, uids, site)
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
    from cgirt.host.config import drop_in_files, host_settings

    tables = [{**main.table("runner"), **main.table(f"sites.{name}")}
              for name in main.site_names()]
    for drop_in in drop_in_files(main, host_settings(main)):
        try:
            tables.append({**main.table("runner"), **_config(pid, drop_in).data})
        except ReloadRefused:
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
            else:
                return None
        elif len(key) > 2 and key.startswith("--") and name.startswith(key):
            raise _refused(pid, "has a command line that cannot be read unambiguously")
    return value


def _uids(status: str) -> list[int]:
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return [int(u) for u in line.split()[1:]]
    return []


def _one_uid(pid: int, uids: list[int], site: Path) -> int:
    """The one user the process runs as: the gateway's own, or the site owner's."""
    if len(set(uids)) != 1:
        # A set-user-ID program: its command line is its caller's to choose.
        raise _refused(pid, "runs with mixed user ids")
    uid = uids[0]
    if uid not in (os.geteuid(), os.stat(site).st_uid):
        raise _refused(pid, "belongs to another user")
    return uid


def _refused(pid: int, why: str) -> ReloadRefused:
    return ReloadRefused(f"SITE RELOAD refused: runner.pid names pid {pid}, which {why}; "
                         "nothing was signalled.")
