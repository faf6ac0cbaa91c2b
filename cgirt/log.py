"""Logging: the runner's own `cgirt.error` / `cgirt.access` loggers, and a site's error log.

A site's error log receives its scripts' stderr and tracebacks, each line tagged with the
script and the request's URI, appended with one write per line (O_APPEND), so lines from
several workers never interleave mid-line; `logfiles.LogFile` reopens it after a rotation.
The FTP gateway shows this file to the site owner as logs/error.log.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from .errors import StartupError
from .logfiles import (LogFile, LogFileHandler, ReopenCounter, StampFormatter, iso_stamp,
                       shared_counter)


def setup_runner_logging(level: int = logging.INFO, file: str = "") -> None:
    """To standard error, or to `file` (reopened on SIGUSR1, as the site logs are)."""
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    if file:
        try:
            handler = LogFileHandler(Path(file), shared_counter())
        except OSError as exc:
            raise StartupError(f"cannot open the log file {file}: {exc.strerror}") from None
    handler.setFormatter(StampFormatter("%(asctime)s [%(process)d] %(levelname)s %(message)s"))
    root = logging.getLogger("cgirt")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class ErrorLog:
    def __init__(self, path: Path, site: Path, counter: ReopenCounter | None = None,
                 max_bytes: int = 0) -> None:
        self.path = path
        self._site = str(site).rstrip("/") + "/"
        self.file = LogFile(path, counter, max_bytes, anchor=site)
        self.request = "-"  # "METHOD URI" of the request being served, set by the app

    def open(self) -> None:
        self.file.open()

    def close(self) -> None:
        self.file.close()

    def relative(self, script: str) -> str:
        return script[len(self._site):] if script.startswith(self._site) else script

    def line(self, script: str, text: str) -> None:
        record = (f"[{iso_stamp()}] [pid {os.getpid()}] [{self.request}] "
                  f"{self.relative(script)}: {text}\n")
        try:
            self.file.write(record.encode("utf-8", "backslashreplace"))
        except OSError:
            logging.getLogger("cgirt.error").error("cannot write the error log %s", self.path)
