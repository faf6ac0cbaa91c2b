"""Wiring: bind the listening socket once, build the app, hand both to the supervisor."""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from pathlib import Path

from .. import site as site_layout
from .app import CgiApp
from ..config import RunnerConfig
from ..errors import ConfigError, StartupError
from ..fastcgi.server import FastCGIServer, io_timeout
from .freshness import PublishNotices
from ..notice import Verifier, read_secret
from .slowlog import SLOW_SIGNAL
from .statusserver import (PoolMonitor, StatusServer, bind_status, remove_socket,
                           status_address)
from ..logfiles import Rotator, owned_like
from .. import sitefiles
from ..sitefiles import remove_pid, write_pid
from .supervisor import Supervisor, SupervisorSettings

log = logging.getLogger("cgirt.error")


def bind(listen: str, socket_mode: int) -> socket.socket:
    """A listening socket for `unix:PATH`, `HOST:PORT` or an inherited `fd:0`."""
    if listen == "fd:0":
        try:
            sock = socket.socket(fileno=0)
            if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                raise OSError(errno.EINVAL, "not listening")
        except OSError as exc:
            raise StartupError(f"fd 0 is not a listening socket ({exc.strerror or exc}); "
                               "fd:0 is for web servers that start cgirt (mod_fcgid, spawn-fcgi)") from None
        return sock
    if listen.startswith("unix:"):
        return _bind_unix(listen[5:], socket_mode)
    host, _, port = listen.rpartition(":")
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on {listen}: {exc.strerror}") from None
    sock.listen(256)
    return sock


def _bind_unix(path: str, mode: int) -> socket.socket:
    if os.path.exists(path):
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            raise StartupError(f"cannot listen on unix:{path}: a file that is not a socket is there")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(path)
            raise StartupError(f"cannot listen on unix:{path}: socket in use by another process")
        except (ConnectionRefusedError, FileNotFoundError):
            os.unlink(path)  # stale socket from a process that is gone
        except PermissionError:
            raise StartupError(f"cannot listen on unix:{path}: a socket this user may not "
                               "use is there (another user's process?)") from None
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        # Not through a link: in a site's .cgirt/ its owner can swap one in after the bind.
        sitefiles.chmod(Path(path), mode)
    except OSError as exc:
        sock.close()
        raise StartupError(f"cannot listen on unix:{path}: {exc.strerror}") from None
    sock.listen(256)
    return sock


def describe(sock: socket.socket) -> str:
    name = sock.getsockname()
    if isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    return f"unix:{name}"


def serve(config: RunnerConfig, name: str | None = None) -> int:
    """Run the runner until stopped; returns the supervisor's exit status. `name` names
    the pool in its status (default: the site directory's name)."""
    if not config.site.is_dir():
        raise StartupError(f"site directory {config.site} does not exist")
    try:
        site_layout.ensure_state(config.site)
    except OSError as exc:  # a state folder the owner made a link: a traceback said so
        raise StartupError(f"cannot use the state folder of {config.site}: {exc.strerror}") \
            from None
    _warn_if_readable_by_other_sites(config)
    secret = read_secret(config.publish_secret) if config.publish_secret is not None else None
    if secret is not None and status_address(config) is None:
        raise ConfigError("publish_secret needs a status address to take notices on "
                          "(status_listen is off)")
    sock = bind(config.listen, config.socket_mode)
    try:
        status_sock, status_at = bind_status(config, bind)
    except StartupError:
        _cleanup(sock, config.listen, config.site,
                 site_layout.runner_pid_path(config.site, config.host_name))
        raise
    app = CgiApp(config)
    fcgi = FastCGIServer(app, max_conns=config.workers, io_timeout=io_timeout(config))
    settings = SupervisorSettings(
        workers=config.workers,
        request_kill_after=config.timeout + config.kill_grace,
        max_requests=config.max_requests,
        max_requests_jitter=config.max_requests_jitter,
        graceful_timeout=config.graceful_timeout,
        slow_after=config.slowlog_timeout,
        slow_signal=SLOW_SIGNAL,
    )
    pid_file = site_layout.runner_pid_path(config.site, config.host_name)

    def ready() -> None:
        try:  # root may write here: never through a link the site's owner planted
            write_pid(config.site, pid_file)
        except OSError as exc:
            log.warning("cannot write %s (%s): SITE RELOAD over FTP will not reach this runner",
                        pid_file, exc.strerror)
        log.info("cgirt: serving %s on %s with %d workers (%s mode)",
                 config.site, describe(sock), config.workers, config.mode)
        if status_sock is not None:
            log.info("cgirt: status on %s", describe(status_sock))

    logs, always = site_layout.rotated_logs(config.host_name, config.access_log)
    rotator = Rotator(site_layout.logs_dir(config.site), logs, app.log_counter,
                      config.log_max_size, config.log_backups, owned_like(config.site),
                      always=always, anchor=config.site)
    supervisor = Supervisor(sock, fcgi.handle_connection, settings, child_init=app.child_init,
                            on_ready=ready, on_reopen=rotator.reopen, on_tick=rotator.tick,
                            wake_fds=(app.log_counter.poke_r,))
    if status_sock is not None:
        monitor = PoolMonitor(name or config.site.name, supervisor, sock)
        notices = None
        if secret is not None:
            notices = PublishNotices(Verifier(secret, config.site.name), app.publishes)
        supervisor.observer = StatusServer(status_sock, [monitor], notices)
    try:
        status = supervisor.run()
        if supervisor.halt_reason:
            log.error("cgirt: halting: %s", supervisor.halt_reason)
        return status
    finally:
        _cleanup(sock, config.listen, config.site, pid_file)
        if status_sock is not None:
            status_sock.close()
            remove_socket(status_at or "", config.site)


def _warn_if_readable_by_other_sites(config: RunnerConfig) -> None:
    if os.geteuid() != 0 or os.stat(config.site).st_uid == 0:
        return  # no privilege drop, so no separation is promised
    roots = [config.site / directory for _prefix, directory in config.cgi_roots]
    for d in site_layout.readable_by_others(config.site, roots):
        log.warning("cgirt: %s can be read by other sites' scripts (it and %s are "
                    "searchable by others); chmod 0700 %s, or chmod o-rx %s", d, config.site,
                    d, config.site)


def _cleanup(sock: socket.socket, listen: str, site: Path, pid_file: Path) -> None:
    remove_socket(listen, site)
    sock.close()
    try:
        remove_pid(site, pid_file)
    except OSError:
        pass
