"""The gateway's log file, reopened on request so that logrotate can move it away.

After `mv ftp.log ftp.log.1` the handler still writes into the moved file (same inode);
SIGUSR1 makes it open the path again, creating a new file there. It is the runner's log
file (`cgirt.logfiles`: a whole line per `os.write` on an O_APPEND descriptor, no link
followed), reopened at once by the serve loop rather than by a counter shared with workers
the gateway does not have. The swap happens under the handler's lock, so a line logged
meanwhile by any thread goes whole to one file or the other.
"""

from __future__ import annotations

from pathlib import Path

from cgirt.logfiles import LogFileHandler


class ReopenableFileHandler(LogFileHandler):
    def __init__(self, path: Path) -> None:
        super().__init__(path, None)

    def reopen(self) -> None:
        """Raises OSError, the old file still in use, when the path cannot be opened."""
        self.acquire()
        try:
            self.file.open(strict=True)
        finally:
            self.release()
