"""The project's typed errors, and the exit-status table every command shares.

`CgirtError` is the root of every error cgirt raises on purpose, the FTP gateway's included.
Request errors carry the HTTP status they become (in runner/app.py only); the command-line
programs turn every other error into an exit status with `exit_status_for`, so the same
situation gets the same status from `cgirt serve`, `cgirt ftp`, `cgirt user`, `cgirt config`
and `python -m cgirt.devserver`.
"""

from __future__ import annotations

import enum


class ExitStatus(enum.IntEnum):
    """What a cgirt program's exit status means (README.md shows this table)."""

    OK = 0  # stopped cleanly, or did what it was asked
    FAILURE = 1  # an unexpected failure (a bug: the traceback is printed)
    USAGE = 2  # bad arguments, configuration or users file: one line names the problem
    BOOT_FAILED = 3  # the runner's workers failed at boot: halted instead of respawning
    CANNOT_START = 4  # site missing, address or socket in use, fd 0 not a listening socket
    REFUSED = 5  # reopen-logs, reload: a site's runner.pid names no runner of it; not signalled


class CgirtError(Exception):
    """Root of every error cgirt raises on purpose."""

    exit_status = ExitStatus.FAILURE


class ConfigError(CgirtError):
    """A setting (a flag or a line of a file) is missing or invalid; the message names it."""

    exit_status = ExitStatus.USAGE


class StartupError(CgirtError):
    """A program cannot start (address or socket in use, site missing); the message says why."""

    exit_status = ExitStatus.CANNOT_START


class RunnerRefused(CgirtError):
    """A site's runner.pid names no runner master of that site (its owner may write any pid
    there): nothing is signalled; the message says why."""

    exit_status = ExitStatus.REFUSED


def exit_status_for(error: BaseException) -> ExitStatus:
    """The one mapping from an error to a program's exit status."""
    if isinstance(error, CgirtError):
        return error.exit_status
    return ExitStatus.FAILURE


class HttpError(CgirtError):
    """A request fails with an HTTP status; `log` (if any) goes to the error log only."""

    status = 500
    reason = "Internal Server Error"

    def __init__(self, message: str = "", log: str | None = None, script: str | None = None) -> None:
        super().__init__(message or self.reason)
        self.log = log
        self.script = script


class BadRequest(HttpError):
    status, reason = 400, "Bad Request"


class Forbidden(HttpError):
    status, reason = 403, "Forbidden"


class ScriptNotFound(HttpError):
    status, reason = 404, "Not Found"


class PayloadTooLarge(HttpError):
    status, reason = 413, "Payload Too Large"


class ScriptFailed(HttpError):
    """The script ended without a valid response (malformed headers, no output, crash)."""

    status, reason = 500, "Internal Server Error"


class RequestTimeout(HttpError):
    status, reason = 504, "Gateway Timeout"


class RedirectLoop(HttpError):
    status, reason = 500, "Internal Server Error"
