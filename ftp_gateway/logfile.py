"""The gateway's log file, reopened on request so that logrotate can move it away.

After `mv ftp.log ftp.log.1` the handler still writes into the moved file (same inode);
SIGUSR1 makes it open the path again, creating a new file there. Lines logged meanwhile
by any thread go whole to one file or the other: the swap happens under the handler's lock.
"""

from __future__ import annotations

import logging
from pathlib import Path


class ReopenableFileHandler(logging.FileHandler):
    def __init__(self, path: Path) -> None:
        super().__init__(path, mode="a", encoding="utf-8")

    def reopen(self) -> None:
        self.acquire()
        try:
            new = self._open()  # raises before anything changes if the path cannot be opened
            old, self.stream = self.stream, new
            if old is not None:
                old.close()
        finally:
            self.release()
