"""Command-line glue: `ftp` (run the gateway) and `user` (manage the users file).

`register(subparsers)` is what the main `cgirt` CLI calls; `python -m ftp_gateway`
uses the same function. Only this module prints or decides exit codes.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from cgirt.config import add_flags, flag_values, parse_values, raise_first
from cgirt.errors import CgirtError, ExitStatus, exit_status_for
from cgirt.logfiles import StampFormatter

from .config import GatewayConfig, config_from
from .errors import CannotListen, ConfigError, UsersFileError
from .users import DEFAULT_PERM, User, check_name, editing, hash_password, read_users

PROG = "cgirt"


def register(subparsers: Any) -> None:
    _register_ftp(subparsers)
    _register_user(subparsers)


# --- cgirt ftp ----------------------------------------------------------------------


def _register_ftp(subparsers: Any) -> None:
    p = subparsers.add_parser("ftp", help="run the FTP/FTPS deployment gateway")
    p.add_argument("--config", type=Path, help="TOML file; its [ftp] table (flags override it)")
    add_flags(p, GatewayConfig)
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    p.set_defaults(func=run_ftp)


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    """[ftp] of --config, then the flags; deprecated spellings are warned about."""
    from cgirt.cli import tell, warn

    from_file: dict[str, Any] = {}
    if args.config is not None:
        from cgirt.configfile import ConfigFile

        fields, problems, warnings = ConfigFile(args.config).read(GatewayConfig, "ftp",
                                                                  args.config.parent)
        for warning in warnings:
            tell(warning)
        if problems:
            raise ConfigError(problems[0])
        from_file = fields
    flags, issues = parse_values(GatewayConfig, flag_values(args, GatewayConfig), from_flags=True)
    raise_first(issues, warn)
    return config_from({**from_file, **flags})


def run_ftp(args: argparse.Namespace) -> int:
    """Signals: TERM and INT stop, HUP reloads the users file and the TLS certificate,
    USR1 reopens the log file; the handlers only record, the serve loop acts."""
    from .logfile import ReopenableFileHandler
    from .server import serve  # pyftpdlib is imported only when the gateway runs

    stop, reload_requested, reopen_requested = (threading.Event() for _ in range(3))
    requests = {signal.SIGTERM: stop, signal.SIGINT: stop, signal.SIGHUP: reload_requested,
                signal.SIGUSR1: reopen_requested}

    def record(signum: int, frame: Any) -> None:
        requests[signal.Signals(signum)].set()  # the serve loop acts within one poll interval

    for signum in requests:
        signal.signal(signum, record)

    def announce(host: str, port: int) -> None:
        print(f"cgirt ftp listening on {host}:{port}", flush=True)

    try:
        config = config_from_args(args)
        try:
            log_file = ReopenableFileHandler(config.log_file) if config.log_file else None
        except OSError as err:
            raise ConfigError(f"cannot open the log file {config.log_file}: {err.strerror}") from None
        handler: logging.Handler = log_file or logging.StreamHandler(sys.stderr)
        handler.setFormatter(StampFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        logging.basicConfig(level=args.log_level, handlers=[handler])
        try:
            serve(config, stop, announce, reload_requested=reload_requested,
                  reopen_requested=reopen_requested,
                  reopen_logs=log_file.reopen if log_file else lambda: None)
        except OSError as err:
            raise CannotListen(f"cannot listen on {config.host}:{config.port}: "
                               f"{err.strerror or err}") from None
    except CgirtError as err:
        return _fail(f"ftp: {err}", err)
    return ExitStatus.OK


# --- cgirt user -----------------------------------------------------------------------


def _register_user(subparsers: Any) -> None:
    p = subparsers.add_parser("user", help="manage FTP users (virtual, hashed passwords)")
    sub = p.add_subparsers(dest="user_command", metavar="{add,passwd,del,list}")
    sub.required = True

    add = sub.add_parser("add", help="add a user whose home is a site directory")
    add.add_argument("name")
    add.add_argument("--site", required=True, type=Path, help="the site's root directory")
    add.add_argument("--perm", default=DEFAULT_PERM, help="pyftpdlib permission letters")
    add.set_defaults(func=user_add)

    passwd = sub.add_parser("passwd", help="set a user's password")
    passwd.add_argument("name")
    passwd.set_defaults(func=user_passwd)

    delete = sub.add_parser("del", help="delete a user (the site is left alone)")
    delete.add_argument("name")
    delete.set_defaults(func=user_del)

    listing = sub.add_parser("list", help="list users and their sites")
    listing.set_defaults(func=user_list)

    for parser in (add, passwd, delete, listing):
        parser.add_argument("--users", type=Path,
                            help="users file (default: the one of --config, or of the --site "
                                 "that `cgirt up` runs)")
        parser.add_argument("--config", type=Path, help="TOML file whose [ftp] table names users")
        if parser is not add:
            parser.add_argument("--site", type=Path,
                                help="find the users file `cgirt up` keeps for this site")


def users_path(args: argparse.Namespace) -> Path:
    """The users file: --users, else the one --config names, else the one `cgirt up` keeps
    for --site. Never a guess: a file that cannot be found is an error naming the options."""
    if args.users is not None:
        return Path(args.users)
    if args.config is not None:
        from cgirt.configfile import ConfigFile

        file = ConfigFile(args.config)
        table = file.table("ftp")
        if "users" not in table:
            raise ConfigError(f"{args.config}: its [ftp] table names no users file; "
                              "give --users FILE")
        # Read as the gateway reads it: relative to the file's directory.
        fields, issues = parse_values(GatewayConfig, {"users": table["users"]},
                                      base=args.config.parent)
        for issue in issues:
            raise ConfigError(file.at("users", "ftp", issue.message))
        return Path(fields["users_file"])
    if args.site is not None:
        from cgirt.up import users_file

        kept = users_file(args.site.resolve())
        if kept.is_file():
            return kept
        raise ConfigError(f"no users file for {args.site}: `cgirt up` keeps none there ({kept}); "
                          "give --users FILE, or --config FILE with users in its [ftp] table")
    raise ConfigError("which users file? give --users FILE, --config FILE (its [ftp] users), "
                      "or --site DIR of a site that `cgirt up` runs")


def user_add(args: argparse.Namespace) -> int:
    try:
        check_name(args.name)
        site = args.site.resolve()
        if not site.is_dir():
            raise UsersFileError(f"site directory not found: {args.site}")
        _check_perm(args.perm)
        path = users_path(args)
        password = read_new_password()
        with editing(path) as users:
            if args.name in users:
                raise UsersFileError(f"user {args.name!r} already exists")
            users[args.name] = User(args.name, site, hash_password(password), args.perm)
    except CgirtError as err:
        return _fail(f"user add: {err}", err)
    print(f"user {args.name} added (site {site})")
    return ExitStatus.OK


def user_passwd(args: argparse.Namespace) -> int:
    try:
        path = users_path(args)
        if args.name not in read_users(path):
            raise UsersFileError(f"no such user: {args.name}")
        new_hash = hash_password(read_new_password())
        with editing(path) as users:
            if args.name not in users:
                raise UsersFileError(f"no such user: {args.name}")
            old = users[args.name]
            users[args.name] = User(old.name, old.site, new_hash, old.perm)
    except CgirtError as err:
        return _fail(f"user passwd: {err}", err)
    print(f"password of {args.name} changed")
    return ExitStatus.OK


def user_del(args: argparse.Namespace) -> int:
    try:
        with editing(users_path(args)) as users:
            if users.pop(args.name, None) is None:
                raise UsersFileError(f"no such user: {args.name}")
    except CgirtError as err:
        return _fail(f"user del: {err}", err)
    print(f"user {args.name} deleted")
    return ExitStatus.OK


def user_list(args: argparse.Namespace) -> int:
    try:
        users = read_users(users_path(args))
    except CgirtError as err:
        return _fail(f"user list: {err}", err)
    for name, user in sorted(users.items()):
        print(f"{name}\t{user.site}\t{user.perm}")
    return ExitStatus.OK


def read_new_password() -> str:
    """From stdin when it is not a terminal (scripts, tests), else prompted twice."""
    if sys.stdin is None or not sys.stdin.isatty():
        password = (sys.stdin.readline() if sys.stdin else "").rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise UsersFileError("the passwords do not match")
    if not password:
        raise UsersFileError("empty password")
    return password


def _check_perm(perm: str) -> None:
    unknown = set(perm) - set("elradfmwMT")
    if unknown:
        raise UsersFileError(f"unknown permission letters: {''.join(sorted(unknown))}")


def _fail(message: str, error: CgirtError) -> int:
    print(f"{PROG} {message}", file=sys.stderr)
    return exit_status_for(error)
