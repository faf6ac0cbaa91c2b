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

from cgirt.logfiles import StampFormatter

from .config import GatewayConfig, parse_listen, parse_port_range, table_values
from .errors import ConfigError, GatewayError, UsersFileError
from .users import DEFAULT_PERM, User, check_name, editing, hash_password, read_users

PROG = "cgirt"


def register(subparsers: Any) -> None:
    _register_ftp(subparsers)
    _register_user(subparsers)


# --- cgirt ftp ----------------------------------------------------------------------


def _register_ftp(subparsers: Any) -> None:
    p = subparsers.add_parser("ftp", help="run the FTP/FTPS deployment gateway")
    p.add_argument("--config", type=Path, help="TOML file; its [ftp] table (flags override it)")
    p.add_argument("--users", type=Path, help="users file")
    p.add_argument("--listen", help="HOST:PORT (port 0: any; default 127.0.0.1:2121)")
    p.add_argument("--port-file", type=Path, help="write 'HOST PORT' here once listening")
    p.add_argument("--tls", action="store_true", default=None, help="offer explicit FTPS (AUTH TLS)")
    p.add_argument("--require-tls", action="store_true", default=None,
                   help="refuse logins and transfers without TLS (implies --tls)")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate (chain); implies --tls")
    p.add_argument("--tls-key", type=Path, help="PEM key (default: in --tls-cert)")
    p.add_argument("--tls-dir", type=Path,
                   help="where the self-signed certificate is kept (default: users file dir)")
    p.add_argument("--passive-ports", help="passive port range LOW-HIGH")
    p.add_argument("--masquerade", help="IPv4 address to announce in PASV replies")
    p.add_argument("--max-connections", type=int, help="in total (default 256)")
    p.add_argument("--max-connections-per-ip", type=int, help="per address (default 10)")
    p.add_argument("--idle-timeout", type=float, help="seconds (default 300)")
    p.add_argument("--data-timeout", type=float, help="seconds (default 120)")
    p.add_argument("--ban-failures", type=int, help="N failed logins ... (default 5)")
    p.add_argument("--ban-window", type=float, help="... within S seconds (default 600)")
    p.add_argument("--ban-duration", type=float, help="ban for S seconds (default 900)")
    p.add_argument("--auth-failed-delay", type=float, help="seconds (default 1)")
    p.add_argument("--quota-bytes", type=int, help="per site; 0: unlimited")
    p.add_argument("--quota-files", type=int, help="per site; 0: unlimited")
    p.add_argument("--max-file-size", type=int, help="bytes; 0: unlimited")
    p.add_argument("--completion-grace", type=float,
                   help="seconds to watch for a dying client before publishing (default 0.1)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    p.set_defaults(func=run_ftp)


# Command-line option → GatewayConfig field, for the options given on the command line.
_FLAG_FIELDS = {
    "users": "users_file", "port_file": "port_file", "tls": "tls", "require_tls": "require_tls",
    "tls_cert": "tls_cert", "tls_key": "tls_key", "tls_dir": "tls_dir",
    "masquerade": "masquerade_address", "max_connections": "max_connections",
    "max_connections_per_ip": "max_connections_per_ip", "idle_timeout": "idle_timeout",
    "data_timeout": "data_timeout", "ban_failures": "ban_failures", "ban_window": "ban_window",
    "ban_duration": "ban_duration", "auth_failed_delay": "auth_failed_delay",
    "quota_bytes": "quota_bytes", "quota_files": "quota_files", "max_file_size": "max_file_size",
    "completion_grace": "completion_grace",
}


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    values: dict[str, Any] = {}
    if args.config is not None:
        from cgirt.configfile import ConfigFile

        values.update(table_values(ConfigFile(args.config).table("ftp"), args.config.parent))
    for flag, name in _FLAG_FIELDS.items():
        if getattr(args, flag) is not None:
            values[name] = getattr(args, flag)
    if args.listen is not None or "host" not in values:
        values["host"], values["port"] = parse_listen(args.listen or "127.0.0.1:2121")
    if args.passive_ports:
        values["passive_ports"] = parse_port_range(args.passive_ports)
    if "users_file" not in values:
        raise ConfigError("no users file: give --users FILE or users in the [ftp] table")
    return GatewayConfig(**values)


def run_ftp(args: argparse.Namespace) -> int:
    from .server import serve  # pyftpdlib is imported only when the gateway runs

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(StampFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=args.log_level, handlers=[handler])
    stop = threading.Event()

    def record(signum: int, frame: Any) -> None:
        stop.set()  # the serve loop notices within one poll interval

    signal.signal(signal.SIGTERM, record)
    signal.signal(signal.SIGINT, record)

    def announce(host: str, port: int) -> None:
        print(f"cgirt ftp listening on {host}:{port}", flush=True)

    try:
        serve(config_from_args(args), stop, announce)
    except GatewayError as err:
        return _fail(f"ftp: {err}")
    except OSError as err:
        return _fail(f"ftp: cannot listen on {args.listen}: {err.strerror}")
    return 0


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
        parser.add_argument("--users", required=True, type=Path, help="users file")


def user_add(args: argparse.Namespace) -> int:
    try:
        check_name(args.name)
        site = args.site.resolve()
        if not site.is_dir():
            raise UsersFileError(f"site directory not found: {args.site}")
        _check_perm(args.perm)
        password = read_new_password()
        with editing(args.users) as users:
            if args.name in users:
                raise UsersFileError(f"user {args.name!r} already exists")
            users[args.name] = User(args.name, site, hash_password(password), args.perm)
    except GatewayError as err:
        return _fail(f"user add: {err}")
    print(f"user {args.name} added (site {site})")
    return 0


def user_passwd(args: argparse.Namespace) -> int:
    try:
        if args.name not in read_users(args.users):
            raise UsersFileError(f"no such user: {args.name}")
        new_hash = hash_password(read_new_password())
        with editing(args.users) as users:
            if args.name not in users:
                raise UsersFileError(f"no such user: {args.name}")
            old = users[args.name]
            users[args.name] = User(old.name, old.site, new_hash, old.perm)
    except GatewayError as err:
        return _fail(f"user passwd: {err}")
    print(f"password of {args.name} changed")
    return 0


def user_del(args: argparse.Namespace) -> int:
    try:
        with editing(args.users) as users:
            if users.pop(args.name, None) is None:
                raise UsersFileError(f"no such user: {args.name}")
    except GatewayError as err:
        return _fail(f"user del: {err}")
    print(f"user {args.name} deleted")
    return 0


def user_list(args: argparse.Namespace) -> int:
    try:
        users = read_users(args.users)
    except GatewayError as err:
        return _fail(f"user list: {err}")
    for name, user in sorted(users.items()):
        print(f"{name}\t{user.site}\t{user.perm}")
    return 0


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


def _fail(message: str) -> int:
    print(f"{PROG} {message}", file=sys.stderr)
    return 2
