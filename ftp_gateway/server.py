"""Wiring: a fresh handler and server subclass per configuration, and the serve loop.

Settings are never assigned onto pyftpdlib's own classes (they are class attributes
there, shared by every server in the process); each server gets subclasses of its own.
ThreadedFTPServer is used so a slow compile or fsync in one session does not stall the
others; the filesystem class never calls os.chdir, which would race between threads.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import ThreadedFTPServer

from cgirt import errors as cgirt_errors
from cgirt.notice import read_secret

from .auth import SiteAuthorizer
from .bans import BanList
from .config import GatewayConfig
from .errors import ConfigError, GatewayError, UsersFileError
from .filesystem import SiteFS
from .handler import (
    GATEWAY_COMMANDS,
    Gateway,
    GatewayHandler,
    PublishingDTPHandler,
    TlsGatewayHandler,
    TlsPublishingDTPHandler,
)
from .notify import Runners
from .users import UsersStore

log = logging.getLogger("cgirt.ftp")


def build_handler(config: GatewayConfig) -> type[FTPHandler]:
    users = UsersStore(config.users_file)
    # Read now: a broken file is an error at start, and a good one is the table that a
    # later broken edit (or a SIGHUP on one) falls back to.
    error = users.reload()
    if error:
        raise UsersFileError(error)
    gateway = Gateway(
        config=config,
        users=users,
        bans=BanList(config.ban_failures, config.ban_window, config.ban_duration),
        runners=_runners(config),
    )
    base, dtp_base, commands = _bases(config)
    dtp = type("CgirtDTPHandler", (dtp_base,), {"timeout": config.data_timeout})
    attrs: dict[str, Any] = {
        "gateway": gateway,
        "authorizer": SiteAuthorizer(gateway.users),
        "abstracted_fs": SiteFS,
        "dtp_handler": dtp,
        "proto_cmds": {**commands, **GATEWAY_COMMANDS},
        "banner": config.banner,
        "timeout": config.idle_timeout,
        "passive_ports": _passive_ports(config),
        "masquerade_address": config.masquerade_address,
        "permit_foreign_addresses": False,  # no FXP: data only to the client itself
        "permit_privileged_ports": False,
        "auth_failed_timeout": config.auth_failed_delay,
    }
    if config.tls:
        from .tls import ssl_context

        attrs.update(
            ssl_context=ssl_context(config),
            tls_control_required=config.require_tls,
            tls_data_required=config.require_tls,
        )
    return type("CgirtFTPHandler", (base,), attrs)


def _bases(config: GatewayConfig) -> tuple[type, type, dict[str, Any]]:
    if config.tls:
        return TlsGatewayHandler, TlsPublishingDTPHandler, dict(TLS_FTPHandler.proto_cmds)
    return GatewayHandler, PublishingDTPHandler, dict(FTPHandler.proto_cmds)


def _passive_ports(config: GatewayConfig) -> list[int] | None:
    if config.passive_ports is None:
        return None
    low, high = config.passive_ports
    return list(range(low, high + 1))


class GatewayServer(ThreadedFTPServer):  # type: ignore[misc]
    def _loop(self, handler: Any) -> None:
        # A connection refused on accept (banned address, too many connections) has
        # been answered and closed already; pyftpdlib would still start its thread and
        # fail registering the closed socket (EINVAL, a traceback per refusal).
        if handler._closed:
            return
        super()._loop(handler)


def build_server(config: GatewayConfig) -> ThreadedFTPServer:
    server_class = type("CgirtFTPServer", (GatewayServer,), {
        "max_cons": config.max_connections,
        "max_cons_per_ip": config.max_connections_per_ip,
        # pyftpdlib keeps these on the class; a private pair keeps servers independent.
        "_lock": threading.Lock(),
        "_exit": threading.Event(),
    })
    return server_class((config.host, config.port), build_handler(config))


def bound_address(server: ThreadedFTPServer) -> tuple[str, int]:
    host, port = server.socket.getsockname()[:2]
    return str(host), int(port)


def write_port_file(path: Path, host: str, port: int) -> None:
    """Written by rename, so a reader sees either nothing or the whole line."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{host} {port}\n")
    os.replace(tmp, path)


def reload(handler: Any, config: GatewayConfig) -> None:
    """SIGHUP: the users file and the TLS certificate read again, for sessions that start
    from now on. A file that cannot be used is logged and the one in use is kept: a typo
    must not take the gateway down."""
    error = handler.gateway.users.reload()
    if error:
        log.error("reload: users file not reloaded, the previous users stay: %s", error)
    else:
        log.info("reload: users file %s read again", config.users_file)
    if config.tls:
        from .tls import ssl_context

        try:
            handler.ssl_context = ssl_context(config)
        except (GatewayError, OSError) as err:
            log.error("reload: TLS certificate not reloaded, the previous one stays: %s", err)
        else:
            log.info("reload: TLS certificate read again")


def serve(
    config: GatewayConfig,
    stop: threading.Event,
    on_ready: Callable[[str, int], None] = lambda host, port: None,
    *,
    reload_requested: threading.Event | None = None,
    reopen_requested: threading.Event | None = None,
    reopen_logs: Callable[[], None] = lambda: None,
) -> None:
    """Listen, announce the bound address, and serve until `stop` is set.

    The events are set by signal handlers, which only record; the loop acts on them
    between two polls (at most half a second later)."""
    server = build_server(config)
    try:
        host, port = bound_address(server)
        if config.port_file is not None:
            write_port_file(config.port_file, host, port)
        on_ready(host, port)
        log.info("cgirt FTP gateway listening on %s:%d", host, port)
        while not stop.is_set():
            server.serve_forever(timeout=0.5, blocking=False, handle_exit=False)
            if reopen_requested is not None and reopen_requested.is_set():
                reopen_requested.clear()
                try:
                    reopen_logs()
                except OSError as err:  # the old file stays in use: no line is lost
                    log.error("cannot reopen the log file (%s); still writing the old one",
                              err.strerror)
                else:
                    log.info("log file reopened")
            if reload_requested is not None and reload_requested.is_set():
                reload_requested.clear()
                reload(server.handler, config)
    finally:
        server.close_all()


def _runners(config: GatewayConfig) -> Runners | None:
    if not config.runners or config.publish_secret is None:
        return None
    try:
        secret = read_secret(config.publish_secret)
    except cgirt_errors.ConfigError as exc:
        raise ConfigError(str(exc)) from None
    return Runners(config.runners, secret, config.notify_timeout)
