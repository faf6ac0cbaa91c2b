"""The gateway's typed errors, and the one place where they become FTP replies.

Code that refuses something raises one of these; `reply_for` turns it into the reply
line(s). Errors that only concern the administrator (bad configuration, a broken users
file) carry no FTP code: the CLI prints them.
"""

from __future__ import annotations

from cgirt import errors as cgirt_errors


class GatewayError(cgirt_errors.CgirtError):
    """Base of every error the gateway raises on purpose."""


# --- administrator-facing (CLI) errors ---------------------------------------------


class ConfigError(GatewayError, cgirt_errors.ConfigError):
    """An invalid setting; reported at start-up, before anything listens."""


class UsersFileError(GatewayError):
    """The users file is unreadable, malformed, or the requested change is invalid."""

    exit_status = cgirt_errors.ExitStatus.USAGE


class CannotListen(GatewayError, cgirt_errors.StartupError):
    """The gateway cannot listen (address in use, no permission for the port)."""


# --- client-facing errors: each knows its reply code --------------------------------


class FtpRefusal(GatewayError):
    """A request refused with a specific FTP reply code."""

    code = 550

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class PathRefused(FtpRefusal):
    """A path that is outside the home, hidden, or otherwise not for this client."""

    code = 550


class ReadOnlyPath(FtpRefusal):
    """A write to the virtual, read-only logs/ folder."""

    code = 550


class CommandRefused(FtpRefusal):
    """A command the gateway deliberately does not support (APPE, STOU)."""

    code = 550


class ResumeRefused(FtpRefusal):
    """STOR after REST: resuming an upload cannot be made atomic and safe."""

    code = 504


class QuotaExceeded(FtpRefusal):
    """The site's byte or file quota would be exceeded (RFC 959: 552)."""

    code = 552


class FileTooLarge(FtpRefusal):
    """The upload is larger than the configured maximum file size."""

    code = 552


class DiskFull(FtpRefusal):
    """The server's disk (not the site's quota) is full (RFC 959: 452)."""

    code = 452


class UploadRejected(FtpRefusal):
    """A complete upload that failed its checks (a syntax error): nothing was published.

    A permanent failure as the final reply to STOR (RFC 959 allows 5xx after the 150),
    so that curl, lftp and ftplib report an error and a deploy script stops; `details`
    become the reply's continuation lines.
    """

    code = 550

    def __init__(self, message: str, details: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.details = details


class ReloadRefused(FtpRefusal):
    """SITE RELOAD: runner.pid names no runner master of this site; nothing was signalled."""

    code = 550


class Banned(FtpRefusal):
    """The client address is banned after repeated failed logins."""

    code = 421


def reply_for(err: FtpRefusal) -> str:
    """The FTP reply for a refusal, code first, no CR/LF smuggled in: one line, or with
    an `UploadRejected`'s details as `CODE-` continuation lines before the final one."""
    details = err.details if isinstance(err, UploadRejected) else ()
    lines = [f"{err.code}-{' '.join(d.split())}" for d in details]
    lines.append(f"{err.code} {' '.join(err.message.split())}")
    return "\r\n".join(lines)
