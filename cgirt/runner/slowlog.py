"""The slow log: where a site's script was when its request ran too long.

The master sends `SLOW_SIGNAL` to a worker whose request has run past `slowlog_timeout`
(once per request); the worker's handler runs on the script's own thread, between two of
its bytecodes, so the frame it is given is the script's: in a busy loop, in `time.sleep`
(the sleep goes on after the handler), deep in the site's own modules. The same stack is
written when a request reaches its deadline (the SIGALRM handler in app.py), before the
script is stopped. A script stuck inside one long C call is reached when that call returns.

Only the site's frames and what they called are written (the runner's own frames above the
script mean nothing to a site owner), as a traceback reads, with paths relative to the site,
one write per entry (O_APPEND) to the site's logs/slow.log, which the FTP gateway shows.
"""

from __future__ import annotations

import logging
import os
import signal
import traceback
from pathlib import Path
from types import FrameType
from typing import Mapping

from ..logfiles import LogFile, ReopenCounter, iso_stamp

log = logging.getLogger("cgirt.error")
SLOW_SIGNAL = signal.SIGRTMIN + 2  # a real-time signal: nothing else in a worker uses it


class SlowLog:
    def __init__(self, path: Path, site: Path, counter: ReopenCounter | None = None,
                 max_bytes: int = 0) -> None:
        self.path = path
        self._prefixes = tuple({str(site).rstrip("/") + "/", os.path.realpath(site) + "/"})
        # Bounded and reopened (rotation, SIGUSR1) like every site log.
        self._file = LogFile(path, counter, max_bytes, anchor=site)
        self._opened = False

    def open(self) -> None:
        """In the worker before the privilege drop, as the error log. A slow log that cannot
        be opened costs no request: its entries go to the runner's own log instead."""
        try:
            self._file.open()
            self._opened = True
        except OSError as exc:
            log.warning("cannot open the slow log %s (%s): its entries go to this log",
                        self.path, exc.strerror)

    def write(self, what: str, frame: FrameType | None, params: Mapping[str, str],
              seconds: float) -> None:
        stamp = iso_stamp()
        request = f"{params.get('REQUEST_METHOD', '')} {params.get('REQUEST_URI', '')}".strip()
        script = params.get("SCRIPT_FILENAME", "")
        if not script.startswith("/"):  # Apache's proxy:fcgi://...
            script = params.get("SCRIPT_NAME", "")
        script = self._relative(script) or "-"
        lines = [f"[{stamp}] [pid {os.getpid()}] {what} after {seconds:.1f} s: {request or '-'}",
                 f"script: {script}"]
        stack = self.site_stack(frame)
        if stack:
            lines.append("Traceback (most recent call last):")
            lines += [s.rstrip("\n") for s in stack.format()]
        else:
            lines.append("(no frame of the site's Python code was running: an exec-mode "
                         "program, or the runner reading or writing for the request)")
        record = "\n".join(lines) + "\n\n"
        try:
            if self._opened:
                self._file.write(record.encode("utf-8", "backslashreplace"))
                return
        except OSError as exc:
            log.error("cannot write the slow log %s (%s)", self.path, exc.strerror)
        log.warning("slow log entry:\n%s", record.rstrip("\n"))

    def site_stack(self, frame: FrameType | None) -> traceback.StackSummary:
        """The frames from the first one of the site's code to `frame`, paths made relative."""
        if frame is None:
            return traceback.StackSummary()
        frames = traceback.extract_stack(frame)
        first = next((i for i, f in enumerate(frames) if f.filename.startswith(self._prefixes)),
                     None)
        if first is None:
            return traceback.StackSummary()
        return traceback.StackSummary.from_list(
            [traceback.FrameSummary(self._relative(f.filename), f.lineno, f.name, line=f.line)
             for f in frames[first:]])

    def _relative(self, path: str) -> str:
        for prefix in self._prefixes:
            if path.startswith(prefix):
                return path[len(prefix):]
        return path
