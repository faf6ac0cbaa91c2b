"""The FTP session: pyftpdlib's handlers, with the publish step placed before the 226.

pyftpdlib replies 226 inside `DTPHandler.close()` and calls `on_file_received` only
afterwards, so the decision "publish or discard" lives in a `close()` override that
runs before the base class's. It publishes only when

* the data connection ended by the client closing it (not ABOR, timeout, or error), and
* the control connection is still up once the data connection has closed.

The second test is what catches a client killed mid-upload: its kernel closes both
connections, and pyftpdlib alone counts the data connection's orderly close as a
complete transfer. Both connections are closed by the dying client at the same instant,
so before publishing the session waits up to `completion_grace` seconds for the
control connection to report a hang-up (poll POLLRDHUP, woken at once by the FIN; it
blocks only this session's thread). A live client sends nothing there: it waits for
the 226.

A rejected upload (a script that does not compile) ends in a 550 reply, not a 226: the
client reports a failure. Refusals raised as typed errors (errors.py) become replies in `process_command` (control
side) and `handle_error` (data side), both through `errors.reply_for`.
"""

from __future__ import annotations

import logging
import select
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler

from cgirt.site import ensure_state
from cgirt.sitefiles import SymlinkRefused

from .bans import BanList
from .config import GatewayConfig
from .errors import (Banned, CommandRefused, FtpRefusal, ResumeRefused, UploadRejected,
                     reply_for)
from .publish import Outcome, StagedUpload, complete_upload, deploy_log, sweep_stale_staging
from .site_commands import check_scripts, reload_runner
from .notify import Runners, announce
from .users import UsersStore

log = logging.getLogger("cgirt.ftp")

MAX_COMMAND = 2048
_HANGUP = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR


@dataclass(frozen=True)
class Gateway:
    """What every session of one server shares."""

    config: GatewayConfig
    users: UsersStore
    bans: BanList
    runners: Runners | None = None  # several runner hosts: notified before every 226


GATEWAY_COMMANDS: dict[str, dict[str, Any]] = {
    "SITE CHECK": dict(perm=None, auth=True, arg=None,
                       help="Syntax: SITE CHECK [<SP> path] (compile Python scripts)."),
    "SITE RELOAD": dict(perm=None, auth=True, arg=False,
                        help="Syntax: SITE RELOAD (restart this site's runner workers)."),
}


def control_alive(cmd_channel: Any, grace: float) -> bool:
    """True if the control connection is up and shows no hang-up within `grace` s."""
    if cmd_channel._closed or not cmd_channel.connected:
        return False
    try:
        fd = cmd_channel.socket.fileno()
    except (OSError, AttributeError):
        return False
    poller = select.poll()
    poller.register(fd, _HANGUP)
    return not poller.poll(int(grace * 1000))


class PublishingDTPMixin:
    """Decides, before pyftpdlib's close() replies, whether an upload is published."""

    cmd_channel: Any
    file_obj: Any
    receive: bool
    transfer_finished: bool
    _closed: bool
    _resp: tuple[Any, ...]

    def close(self) -> None:
        upload = self.file_obj
        if isinstance(upload, StagedUpload) and not upload.done and not self._closed:
            self._settle(upload)
        super().close()  # type: ignore[misc]

    def handle_error(self) -> None:
        try:
            raise  # noqa: PLE0704 -- re-raise the exception being handled
        except FtpRefusal as err:  # quota or size limit hit while receiving
            self._resp = (reply_for(err), log.info)
            self.close()
        except BaseException:
            super().handle_error()  # type: ignore[misc]

    def _settle(self, upload: StagedUpload) -> None:
        user = self.cmd_channel.username
        if not (self.receive and self.transfer_finished):
            upload.discard()
            deploy_log(upload.site, user, f"discarded {upload.virtual}: transfer aborted")
            return
        if not control_alive(self.cmd_channel, self.cmd_channel.gateway.config.completion_grace):
            self.transfer_finished = False
            self._resp = ()  # nobody is listening
            upload.discard()
            deploy_log(upload.site, user, f"discarded {upload.virtual}: the client "
                       "disconnected, the upload may be truncated")
            return
        self._resp = (self._publish(upload, user), log.info)

    def _publish(self, upload: StagedUpload, user: str) -> str:
        try:
            outcome = complete_upload(upload, user)
        except OSError as err:
            upload.discard()
            why = err.strerror
            if isinstance(err, SymlinkRefused):  # its strerror names the server's disk path
                log.warning("%s: not published: %s", upload.virtual, err.strerror)
                why = err.below(upload.site)
            deploy_log(upload.site, user, f"failed {upload.virtual}: {why}")
            return f"451 {upload.virtual} was not published: {why}."
        unreached: list[str] = []
        runners = self.cmd_channel.gateway.runners
        if outcome.published and runners is not None:
            unreached = announce(runners, upload.site.name)
            if unreached:
                log.warning("%s published, not yet live on: %s", upload.virtual,
                            "; ".join(unreached))
                deploy_log(upload.site, user, f"{upload.virtual} not yet live on "
                           f"{'; '.join(unreached)}")
        return publish_reply(upload.virtual, outcome, unreached)


def publish_reply(virtual: str, outcome: Outcome, unreached: list[str] | None = None) -> str:
    if outcome.published and unreached:
        # Still a 226: the file is published and the hosts that acknowledged serve it; the
        # others will once their mount's cache expires, which the client must be told.
        lines = [f"226-{virtual} published (generation {outcome.generation}), but NOT yet "
                 "live on every runner host:"]
        lines += [f"226-  {host}" for host in unreached]
        return "\r\n".join([*lines, "226 Transfer complete; not yet live everywhere."])
    if outcome.published and outcome.generation is None:
        return (f"226 Transfer complete; {virtual} published, but the site's generation could "
                "not be bumped: the runners may serve the old version for a moment.")
    if outcome.published:
        return f"226 Transfer complete; {virtual} published (generation {outcome.generation})."
    assert outcome.finding is not None
    return reply_for(UploadRejected(
        "Upload rejected (details in logs/deploy.log).",
        (f"{virtual} was NOT published; the previous version stays live.",
         outcome.finding.describe())))


class PublishingDTPHandler(PublishingDTPMixin, DTPHandler):  # type: ignore[misc]
    pass


class TlsPublishingDTPHandler(PublishingDTPMixin, TLS_DTPHandler):  # type: ignore[misc]
    """With TLS, pyftpdlib swaps in its own data handler unless told otherwise."""


class GatewayHandlerMixin:
    """Session behaviour shared by the plain and the TLS control handlers."""

    gateway: Gateway
    fs: Any
    _in_buffer: list[bytes]
    _in_buffer_len: int
    remote_ip: str
    username: str
    _restart_position: int

    # --- errors become replies here, once ---------------------------------------------

    def process_command(self, cmd: str, *args: Any, **kwargs: Any) -> None:
        try:
            super().process_command(cmd, *args, **kwargs)  # type: ignore[misc]
        except FtpRefusal as err:
            self.respond(reply_for(err))  # type: ignore[attr-defined]

    # pyftpdlib answers an overlong line with 500 and then parses its tail as a second
    # command, which desynchronises the client; drop the whole line and answer once.
    _overlong = False

    def collect_incoming_data(self, data: bytes) -> None:
        if self._overlong:
            return
        if self._in_buffer_len + len(data) > MAX_COMMAND:
            self._overlong = True
            self._in_buffer, self._in_buffer_len = [], 0
            return
        super().collect_incoming_data(data)  # type: ignore[misc]

    def found_terminator(self) -> None:
        if self._overlong:
            self._overlong = False
            self.respond("500 Command too long.")  # type: ignore[attr-defined]
            return
        super().found_terminator()  # type: ignore[misc]

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
        if "\x00" in line:  # os functions raise ValueError on NUL; refuse it up front
            self.respond("501 NUL bytes are not allowed.")  # type: ignore[attr-defined]
            return
        super().pre_process_command(line, cmd, arg)  # type: ignore[misc]

    # --- bans ---------------------------------------------------------------------------

    def on_connect(self) -> None:
        if self._refuse_if_banned():
            return
        super().on_connect()  # type: ignore[misc]

    def ftp_PASS(self, line: str) -> None:
        if self._refuse_if_banned():
            return
        super().ftp_PASS(line)  # type: ignore[misc]

    def handle_auth_failed(self, msg: str, password: str) -> None:
        if self.gateway.bans.record_failure(self.remote_ip):
            log.warning("banning %s after repeated failed logins", self.remote_ip)
        super().handle_auth_failed(msg, password)  # type: ignore[misc]

    def _refuse_if_banned(self) -> bool:
        left = self.gateway.bans.remaining(self.remote_ip)
        if not left:
            return False
        minutes = max(1, round(left / 60))
        err = Banned(f"Too many failed logins from your address; "
                     f"try again in about {minutes} minute(s).")
        self.respond(reply_for(err))  # type: ignore[attr-defined]
        self.close_when_done()  # type: ignore[attr-defined]
        return True

    def on_login(self, username: str) -> None:
        site = Path(self.fs.root)
        try:
            ensure_state(site)
        except OSError as exc:  # e.g. a symlinked .cgirt/: uploads are refused, reads work
            log.error("%s: %s", site, exc.strerror)
        else:
            if sweep_stale_staging(site):
                log.info("removed stale staging files of %s", site)
        super().on_login(username)  # type: ignore[misc]

    # --- uploads ------------------------------------------------------------------------

    def ftp_STOR(self, file: str, mode: str = "w") -> Any:
        if self._restart_position:
            self._restart_position = 0
            raise ResumeRefused("Resuming uploads is not supported: uploads are published "
                                "whole and atomically; send the complete file.")
        return super().ftp_STOR(file, mode)  # type: ignore[misc]

    def ftp_APPE(self, file: str) -> None:
        self._restart_position = 0
        raise CommandRefused("APPE is not supported: uploads are published whole and "
                             "atomically; send the complete file with STOR.")

    def ftp_STOU(self, line: str) -> None:
        raise CommandRefused("STOU is not supported; upload with STOR.")

    # --- SITE commands ------------------------------------------------------------------

    def ftp_SITE_CHMOD(self, path: str, mode: str) -> None:
        if not (len(mode) in (3, 4) and all(c in "01234567" for c in mode)):
            self.respond("501 Invalid SITE CHMOD format (use octal, e.g. 755).")  # type: ignore
            return
        requested = int(mode, 8)
        try:
            self.fs.chmod(path, requested)  # SiteFS masks the special bits
        except OSError as err:
            self.respond(f"550 {err.strerror}.")  # type: ignore[attr-defined]
            return
        note = " (setuid/setgid/sticky bits ignored)" if requested & 0o7000 else ""
        self.respond(f"200 SITE CHMOD {requested & 0o777:o} successful{note}.")  # type: ignore

    def ftp_SITE_CHECK(self, line: str) -> None:
        site = Path(self.fs.root)
        target = self.fs.ftp2fs(line or "/")
        display = self.fs.fs2ftp(target)
        try:
            report = check_scripts(site, Path(self.fs.readable(target)), display)
        except OSError as err:
            why = err.strerror
            if isinstance(err, SymlinkRefused):  # its strerror names the server's disk path
                log.warning("SITE CHECK %s: %s", display, err.strerror)
                why = err.below(site)
            self.respond(f"550 {display}: {why}.")  # type: ignore[attr-defined]
            return
        for finding in report.findings:
            self.push(f"200-{' '.join(finding.describe().split())}\r\n")  # type: ignore
        status = "no errors" if not report.findings else f"{len(report.findings)} with errors"
        self.respond(f"200 SITE CHECK: {report.checked} script(s) checked, {status}.")  # type: ignore

    def ftp_SITE_RELOAD(self, line: str) -> None:
        runners = self.gateway.runners
        if runners is not None:
            # Several hosts: runner.pid on the shared tree names a process of one machine
            # only, so every host's master is asked with a signed notice instead.
            site = Path(self.fs.root).name
            unreached = announce(runners, site, "reload")
            for host in unreached:
                self.push(f"200-not reached: {host}\r\n")  # type: ignore[attr-defined]
            hosts = len(runners.of(site))
            self.respond(  # type: ignore[attr-defined]
                f"200 Runners on {hosts - len(unreached)} of {hosts} hosts asked to reload "
                "their workers.")
            return
        _done, message = reload_runner(Path(self.fs.root))
        self.respond(f"200 {message}")  # type: ignore[attr-defined]


class GatewayHandler(GatewayHandlerMixin, FTPHandler):  # type: ignore[misc]
    dtp_handler = PublishingDTPHandler


class TlsGatewayHandler(GatewayHandlerMixin, TLS_FTPHandler):  # type: ignore[misc]
    dtp_handler = TlsPublishingDTPHandler
