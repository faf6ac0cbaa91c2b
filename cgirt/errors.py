"""Typed errors of the runner. Each carries the HTTP status it becomes, in app.py only."""

from __future__ import annotations


class CgirtError(Exception):
    """Base of the runner's own errors."""


class ConfigError(CgirtError):
    """A setting is missing or invalid; the message names it."""


class StartupError(CgirtError):
    """The runner cannot start (socket in use, unknown site); the message says why."""


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


class ScriptFailed(HttpError):
    """The script ended without a valid response (malformed headers, no output, crash)."""

    status, reason = 500, "Internal Server Error"


class RequestTimeout(HttpError):
    status, reason = 504, "Gateway Timeout"


class RedirectLoop(HttpError):
    status, reason = 500, "Internal Server Error"
