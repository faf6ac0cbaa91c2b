"""The `cgirt` command. The only place that prints to the user or chooses an exit status.

Exit statuses: 0 stopped cleanly; 1 an unexpected failure; 2 bad arguments or
configuration; 3 workers failed at boot (halted instead of respawning); 4 cannot start
(site missing, address in use, fd 0 not a socket).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from .config import RunnerConfig
from .errors import ConfigError, StartupError

EXIT_USAGE = 2
EXIT_STARTUP = 4


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one clear line, not a usage dump
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cgirt", description="Run ordinary CGI scripts in persistent FastCGI workers.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="run the FastCGI runner for one site")
    serve.add_argument("--site", help="the site directory (holds cgi-bin/ and htdocs/)")
    serve.add_argument("--listen", help="unix:PATH, HOST:PORT or fd:0")
    serve.add_argument("--workers", type=int, help="worker processes")
    serve.add_argument("--mode", choices=["persistent", "fork", "exec"], help="default mode")
    serve.add_argument("--timeout", type=float, help="seconds a request may run")
    serve.add_argument("--max-requests", type=int, help="recycle a worker after N requests")
    serve.add_argument("--max-requests-jitter", type=int, help="random extra requests per worker")
    serve.add_argument("--memory-limit-mb", type=int, help="address-space limit per worker")
    serve.add_argument("--socket-mode", help="octal permissions of a unix socket, e.g. 660")
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
    config_sub = config.add_subparsers(dest="config_command", required=True, parser_class=_Parser)
    check = config_sub.add_parser("check", help="report every problem, with its file and line")
    check.add_argument("file", type=Path)
    check.set_defaults(func=_config_check)
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
    overrides = {k: getattr(args, k) for k in (
        "site", "listen", "workers", "mode", "timeout", "max_requests", "max_requests_jitter",
        "memory_limit_mb", "socket_mode")}
    if args.config is None:
        if args.name:
            raise ConfigError("--name needs --config FILE")
        if args.site is None:
            raise ConfigError("no site given: use --site DIR, or --config FILE")
        return RunnerConfig.from_sources({}, overrides)
    from .configfile import ConfigFile

    file = ConfigFile(args.config)
    if args.site is None and "site" not in file.runner_values(args.name):
        raise ConfigError(f"{args.config}: no site given (set site, or use --name NAME)")
    return file.runner_config(args.name, overrides)


def _config_check(args: argparse.Namespace) -> int:
    from ftp_gateway.config import check_table

    from .configfile import ConfigFile

    file = ConfigFile(args.file)
    problems = file.problems(check_table)
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        return EXIT_USAGE
    sites = file.site_names()
    print(f"{args.file}: ok ({len(sites)} site{'s' * (len(sites) != 1)}"
          f"{', ftp' if 'ftp' in file.data else ''})")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .log import setup_runner_logging
    from .runner.server import serve

    ensure_utf8_mode()
    config = _runner_config(args)
    setup_runner_logging(logging.DEBUG if args.verbose else logging.INFO)
    return serve(config)


def _host(args: argparse.Namespace) -> int:
    from .host.config import HostConfigError
    from .host.master import host
    from .log import setup_runner_logging

    ensure_utf8_mode()
    setup_runner_logging(logging.DEBUG if args.verbose else logging.INFO)
    try:
        return host(args.config)
    except HostConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        return EXIT_USAGE


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
    from .up import UpConfig, start, stop, wait_until_stopped

    if args.workers < 1:
        raise ConfigError("--workers must be at least 1")
    if args.config:
        from .configfile import ConfigFile

        ConfigFile(args.config).runner_config(None, {"site": args.site})  # fail before starting
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
        print(f"cgirt: the {died} process stopped unexpectedly; see {logs}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as exc:
        print(f"cgirt: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except StartupError as exc:
        print(f"cgirt: cannot start: {exc}", file=sys.stderr)
        return EXIT_STARTUP
    except KeyboardInterrupt:
        return 0
