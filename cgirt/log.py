"""Logging: the runner's own `cgirt.error` / `cgirt.access` loggers, and a site's error log.

A site's error log receives its scripts' stderr and tracebacks, each line tagged with the
script, appended with one write per line (O_APPEND), so lines from several workers never
interleave mid-line. The FTP gateway shows this file to the site owner as logs/error.log.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path


def setup_runner_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s %(message)s"))
    root = logging.getLogger("cgirt")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class ErrorLog:
    def __init__(self, path: Path, site: Path) -> None:
        self.path = path
        self._site = str(site).rstrip("/") + "/"
        self._fd = -1

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def relative(self, script: str) -> str:
        return script[len(self._site):] if script.startswith(self._site) else script

    def line(self, script: str, text: str) -> None:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        record = f"[{stamp}] [pid {os.getpid()}] {self.relative(script)}: {text}\n"
        if self._fd < 0:
            self.open()
        try:
            os.write(self._fd, record.encode("utf-8", "backslashreplace"))
        except OSError:
            logging.getLogger("cgirt.error").error("cannot write the error log %s", self.path)
