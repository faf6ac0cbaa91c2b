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

from .config import GatewayConfig, parse_listen, parse_port_range
from .errors import GatewayError, UsersFileError
from .users import DEFAULT_PERM, User, check_name, editing, hash_password, read_users

PROG = "cgirt"


def register(subparsers: Any) -> None:
    _register_ftp(subparsers)
    _register_user(subparsers)


# --- cgirt ftp ----------------------------------------------------------------------


def _register_ftp(subparsers: Any) -> None:
    p = subparsers.add_parser("ftp", help="run the FTP/FTPS deployment gateway")
    p.add_argument("--users", required=True, type=Path, help="users file")
    p.add_argument("--listen", default="127.0.0.1:2121", help="HOST:PORT (port 0: any)")
    p.add_argument("--port-file", type=Path, help="write 'HOST PORT' here once listening")
    p.add_argument("--tls", action="store_true", help="offer explicit FTPS (AUTH TLS)")
    p.add_argument("--require-tls", action="store_true",
                   help="refuse logins and transfers without TLS (implies --tls)")
    p.add_argument("--tls-cert", type=Path, help="PEM certificate (chain); implies --tls")
    p.add_argument("--tls-key", type=Path, help="PEM key (default: in --tls-cert)")
    p.add_argument("--tls-dir", type=Path,
                   help="where the self-signed certificate is kept (default: users file dir)")
    p.add_argument("--passive-ports", help="passive port range LOW-HIGH")
    p.add_argument("--masquerade", help="IPv4 address to announce in PASV replies")
    p.add_argument("--max-connections", type=int, default=256)
    p.add_argument("--max-connections-per-ip", type=int, default=10)
    p.add_argument("--idle-timeout", type=float, default=300.0, help="seconds")
    p.add_argument("--data-timeout", type=float, default=120.0, help="seconds")
    p.add_argument("--ban-failures", type=int, default=5, help="N failed logins ...")
    p.add_argument("--ban-window", type=float, default=600.0, help="... within S seconds")
    p.add_argument("--ban-duration", type=float, default=900.0, help="ban for S seconds")
    p.add_argument("--auth-failed-delay", type=float, default=1.0, help="seconds")
    p.add_argument("--quota-bytes", type=int, default=0, help="per site; 0: unlimited")
    p.add_argument("--quota-files", type=int, default=0, help="per site; 0: unlimited")
    p.add_argument("--max-file-size", type=int, default=0, help="bytes; 0: unlimited")
    p.add_argument("--completion-grace", type=float, default=0.1,
                   help="seconds to watch for a dying client before publishing")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING"])
    p.set_defaults(func=run_ftp)


def config_from_args(args: argparse.Namespace) -> GatewayConfig:
    host, port = parse_listen(args.listen)
    return GatewayConfig(
        users_file=args.users, host=host, port=port, port_file=args.port_file,
        tls=args.tls, require_tls=args.require_tls, tls_cert=args.tls_cert,
        tls_key=args.tls_key, tls_dir=args.tls_dir,
        passive_ports=parse_port_range(args.passive_ports) if args.passive_ports else None,
        masquerade_address=args.masquerade,
        max_connections=args.max_connections,
        max_connections_per_ip=args.max_connections_per_ip,
        idle_timeout=args.idle_timeout, data_timeout=args.data_timeout,
        ban_failures=args.ban_failures, ban_window=args.ban_window,
        ban_duration=args.ban_duration, auth_failed_delay=args.auth_failed_delay,
        quota_bytes=args.quota_bytes, quota_files=args.quota_files,
        max_file_size=args.max_file_size, completion_grace=args.completion_grace,
    )


def run_ftp(args: argparse.Namespace) -> int:
    from .server import serve  # pyftpdlib is imported only when the gateway runs

    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
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
