"""The `cgirt` command: every subcommand; the only place that prints to the user or exits.

The exit statuses are errors.ExitStatus, the same for every command.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .config import RunnerConfig, add_flags, build, flag_values, parse_values, raise_first
from .errors import CgirtError, ConfigError, ExitStatus, exit_status_for
from .status import StatusUnavailable


class Parser(argparse.ArgumentParser):
    """Every cgirt program's parser: a usage error is one clear line, exit status USAGE."""

    def error(self, message: str) -> Any:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(ExitStatus.USAGE)


def warn(message: str) -> None:
    print(f"cgirt: warning: {message}", file=sys.stderr, flush=True)


def tell(line: str) -> None:
    """A line that already says where and what it is ("FILE:LINE: warning: ...")."""
    print(f"cgirt: {line}", file=sys.stderr, flush=True)


def version() -> str:
    """The installed distribution's version; the source's when cgirt runs from a checkout."""
    from importlib import metadata

    try:
        return metadata.version("cgirt")
    except metadata.PackageNotFoundError:
        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="cgirt", description="Run ordinary CGI scripts in persistent FastCGI workers.")
    parser.add_argument("--version", action="version", version=f"cgirt {version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    serve = sub.add_parser("serve", help="run the FastCGI runner for one site")
    add_flags(serve, RunnerConfig)
    serve.add_argument("--config", type=Path,
                       help="TOML file: its [runner] table, and [sites.NAME] with --name")
    serve.add_argument("--name", help="the site's table in the config file: [sites.NAME]")
    serve.add_argument("--verbose", action="store_true", help="log at debug level")
    serve.set_defaults(func=_serve)
    up = sub.add_parser("up", help="runner + FTP gateway + development HTTP front end, on loopback")
    up.add_argument("--site", type=Path, default=Path("cgirt-site"),
                    help="the site directory, created from the skeleton if missing (default: ./cgirt-site)")
    up.add_argument("--http", default="127.0.0.1:8000", help="HOST:PORT of the development front end")
    up.add_argument("--ftp", default="127.0.0.1:2121", help="HOST:PORT of the FTP gateway")
    up.add_argument("--no-ftp", action="store_true", help="no FTP gateway")
    up.add_argument("--workers", type=int, default=2, help="runner worker processes")
    up.add_argument("--config", type=Path, help="TOML file for the runner ([runner] table)")
    up.set_defaults(func=_up)
    host = sub.add_parser("host", help="one master for every site of the host, workers on demand")
    host.add_argument("--config", type=Path, required=True,
                      help="the admin's TOML file: [host], [runner], every [sites.NAME]")
    host.add_argument("--verbose", action="store_true", help="log at debug level")
    host.set_defaults(func=_host)
    config = sub.add_parser("config", help="check a configuration file")
    config_sub = config.add_subparsers(dest="config_command", required=True, parser_class=Parser)
    check = config_sub.add_parser("check", help="report every problem, with its file and line")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_config_check)
    status = sub.add_parser("status", help="a running runner's status (PHP-FPM's fields)")
    status.add_argument("site", nargs="?", help="the site directory (default: the current "
                        "one); with --config, the site's NAME (a host's: only that pool)")
    status.add_argument("--config", type=Path, help="TOML file: find the site and its "
                        "status_listen there (with a [host] table: the host's status)")
    status.add_argument("--address", help="ask this status address (unix:PATH or HOST:PORT); "
                        "several, comma-separated: one status of every runner host")
    fmt = status.add_mutually_exclusive_group()
    fmt.add_argument("--json", dest="format", action="store_const", const="json")
    fmt.add_argument("--openmetrics", dest="format", action="store_const", const="openmetrics")
    status.add_argument("--full", action="store_true", help="every worker, too")
    status.set_defaults(func=_status, format="text")
    for name, signum, does in (("reopen-logs", signal.SIGUSR1, "reopen their logs (SIGUSR1), "
                                "e.g. after logrotate"),
                               ("reload", signal.SIGHUP, "replace their workers gracefully "
                                "(SIGHUP; a `cgirt host` master SIGUSR2, for these sites only)")):
        command = sub.add_parser(name, help=f"ask the runners of sites to {does}")
        command.add_argument("sites", nargs="+", type=Path, metavar="SITE",
                             help="a site directory: the runner master its .cgirt/runner.pid "
                             "names, if that is this site's (a host master: once)")
        command.set_defaults(func=_signal_sites, signum=signum)
    _register_gateway(sub)
    return parser


def _register_gateway(sub: Any) -> None:
    try:
        from ftp_gateway import cli as gateway_cli
    except ImportError:
        return
    register = getattr(gateway_cli, "register", None)
    if register is not None:
        register(sub)


def _runner_config(args: argparse.Namespace) -> RunnerConfig:
    flags, issues = parse_values(RunnerConfig, flag_values(args, RunnerConfig), from_flags=True)
    raise_first(issues, warn)
    if args.config is None:
        if args.name:
            raise ConfigError("--name needs --config FILE")
        if "site" not in flags:
            raise ConfigError("no site given: use --site DIR, or --config FILE")
        config: RunnerConfig = build(RunnerConfig, flags)
        return config
    from .configfile import ConfigFile

    file = ConfigFile(args.config)
    if "site" not in flags and "site" not in file.runner_values(args.name):
        raise ConfigError(f"{args.config}: no site given (set site, or use --name NAME)")
    return file.runner_config(args.name, flags, tell)


def _config_check(args: argparse.Namespace) -> int:
    from ftp_gateway.config import check_file

    from .configfile import ConfigFile

    file = ConfigFile(args.file)
    problems, warnings = file.problems(check_file)
    for line in warnings + problems:
        print(line, file=sys.stderr)
    if problems:
        return ExitStatus.USAGE
    sites = file.site_names()
    print(f"{args.file}: ok ({len(sites)} site{'s' * (len(sites) != 1)}"
          f"{', ftp' if 'ftp' in file.data else ''})")
    return ExitStatus.OK


def _serve(args: argparse.Namespace) -> int:
    from .log import setup_runner_logging
    from .runner.server import serve

    ensure_utf8_mode()
    config = _runner_config(args)
    setup_runner_logging(logging.DEBUG if args.verbose else logging.INFO, config.log_file)
    return serve(config, name=args.name)


def _status(args: argparse.Namespace) -> int:
    from .configfile import ConfigFile
    from .runner.statusserver import status_address
    from .status import fetch

    address, pool = args.address, None
    if address is not None and "," in address:
        from .status import gather

        body, missing = gather([a.strip() for a in address.split(",") if a.strip()],
                               args.format, args.full)
        sys.stdout.buffer.write(body)
        sys.stdout.flush()
        if missing:
            raise StatusUnavailable("; ".join(missing))
        return ExitStatus.OK
    file = ConfigFile(args.config) if args.config is not None and address is None else None
    if file is not None and "host" in file.data:
        from .host.status import host_address

        # One file may serve `cgirt host` and `cgirt serve` runners: a site's own status
        # is asked when the host's socket is not there.
        address, pool = host_address(file, args.site is None), args.site
    if address is None:
        if file is not None:
            config = file.runner_config(args.site, {}, tell)
        else:
            config = RunnerConfig.from_sources({}, {"site": args.site or "."})
        if not config.site.is_dir():
            raise ConfigError(f"site directory {config.site} does not exist")
        address = status_address(config)
        if address is None:
            raise ConfigError("status_listen is \"off\" for this site: it has no status")
    sys.stdout.buffer.write(fetch(address, args.format, args.full, pool=pool))
    sys.stdout.flush()
    return ExitStatus.OK


def _signal_sites(args: argparse.Namespace) -> int:
    from .runnerproc import signal_sites

    done = signal_sites(args.sites, args.signum)
    for site, why in done.refused:
        print(f"cgirt: {site}: not signalled: {why}", file=sys.stderr)
    return ExitStatus.REFUSED if done.refused else ExitStatus.OK


def _host(args: argparse.Namespace) -> int:
    from .host.config import HostConfigError
    from .host.master import host
    from .log import setup_runner_logging

    ensure_utf8_mode()
    level = logging.DEBUG if args.verbose else logging.INFO
    setup_runner_logging(level)
    try:
        return host(args.config, level)
    except HostConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return ExitStatus.USAGE


def ensure_utf8_mode() -> None:
    """Run scripts in Python's UTF-8 mode, as classic CGI runs them: a web server passes no
    locale, so the interpreter it starts for a script is in the C locale, which turns UTF-8
    mode on (PEP 540): open() and locale.getpreferredencoding() answer UTF-8. A runner
    started with a locale (from a shell) is not in it: start again with `-X utf8`, which
    keeps the process, its descriptors (fd:0) and its arguments."""
    if sys.flags.utf8_mode or "utf8" in sys._xoptions or not sys.executable:
        return  # in it, or it was asked for and refused (`-X utf8=0`): never loop
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-X", "utf8", *sys.orig_argv[1:]])


BANNER = """\
cgirt is up. Site: {site}{created}

  Web:  {http}
        (a front end for development only: in production put nginx or Apache in front of
        `cgirt serve`, as INSTALL.md shows)
{ftp}
Logs of the parts: {logs}
Ctrl-C stops everything.
"""


def _up(args: argparse.Namespace) -> int:
    from .up import LOG_FILES, UpConfig, start, stop, wait_until_stopped

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.config:
        from .configfile import ConfigFile

        # Fail before starting anything.
        ConfigFile(args.config).runner_config(None, {"site": args.site.resolve()}, tell)
    config = UpConfig(site=args.site, http=args.http, ftp=None if args.no_ftp else args.ftp,
                      workers=args.workers, runner_config=args.config)
    logs = args.site.resolve() / ".cgirt" / "logs"
    started = start(config, logs)
    ftp = ""
    if started.ftp_url:
        ftp = f"  FTP:  {started.ftp_url}  (explicit FTPS offered; read logs/ there)\n"
        if started.account:
            name, password = started.account
            ftp += (f"        user {name}, password {password}\n"
                    "        (shown this once; change it with `cgirt user passwd`)\n")
    print(BANNER.format(site=args.site.resolve(), http=started.http_url, ftp=ftp, logs=logs,
                        created=" (created from the skeleton)" if started.site_created else ""),
          flush=True)
    try:
        died = wait_until_stopped(started.processes)
    finally:
        stop(started.processes)
    if died:
        print(f"cgirt: the {died} process stopped unexpectedly; see {logs / LOG_FILES[died]}",
              file=sys.stderr)
        return ExitStatus.FAILURE
    return ExitStatus.OK


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except StatusUnavailable as exc:
        return fail(str(exc), exc)
    except KeyboardInterrupt:
        return ExitStatus.OK
    except CgirtError as exc:
        kind = ("configuration error: " if isinstance(exc, ConfigError) else
                "cannot start: " if exit_status_for(exc) == ExitStatus.CANNOT_START else "")
        return fail(kind + str(exc), exc)


def fail(message: str, error: BaseException) -> int:
    """One line for the user; the exit status from the one table (errors.py)."""
    print(f"cgirt: {message}", file=sys.stderr)
    return exit_status_for(error)
