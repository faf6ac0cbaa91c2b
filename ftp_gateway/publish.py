"""Staged uploads, their atomic publish, and the site's deploy.log.

The publish contract: stage, validate, fsync, os.replace, fsync the directory, bump the
generation (cgirt/site.py), and only then reply 226.

`StagedUpload` is the file object pyftpdlib's data channel writes into. It never touches
the final path: only `complete_upload` does, and only after the handler has decided the
transfer really completed.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cgirt.site import (
    CGI_ROOT,
    bump_generation,
    deploy_log_path,
    ensure_state,
    fsync_dir,
    own_like_site,
    staging_dir,
)

from cgirt.logfiles import iso_stamp
from cgirt.sitefiles import open_file

from .errors import DiskFull, FileTooLarge, QuotaExceeded
from .validate import Finding, check_file

_log = logging.getLogger("cgirt.ftp")

SCRIPT_MODE = 0o755
FILE_MODE = 0o644


class StagedUpload:
    """A staging file with limits enforced as the bytes arrive.

    `name` is the final path (pyftpdlib logs it); the bytes go to `staging_path`,
    created by mkstemp (O_EXCL, mode 0600) inside the site's staging directory, on the
    same filesystem so that os.replace is atomic.
    """

    def __init__(
        self,
        site: Path,
        target: Path,
        virtual: str,
        max_size: int | None,
        quota_room: int | None,
    ) -> None:
        ensure_state(site)
        fd, staged = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=staging_dir(site))
        self._file = os.fdopen(fd, "wb")
        self.site = site
        self.target = target
        self.virtual = virtual
        self.name = str(target)
        self.staging_path = Path(staged)
        self.max_size = max_size
        self.quota_room = quota_room
        self.size = 0
        self.done = False

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, data: bytes) -> int:
        size = self.size + len(data)
        if self.max_size is not None and size > self.max_size:
            raise FileTooLarge(f"{self.virtual}: larger than the maximum of "
                               f"{self.max_size} bytes; nothing was published.")
        if self.quota_room is not None and size > self.quota_room:
            raise QuotaExceeded(f"{self.virtual}: the site's quota is exhausted; "
                                "nothing was published, the old file is unchanged.")
        self.size = size
        try:
            return self._file.write(data)
        except OSError as err:
            # pyftpdlib would answer "426 None" (it loses the errno when it wraps the error).
            if err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(f"{self.virtual}: no space left on the server's disk; "
                               "nothing was published, the old file is unchanged.") from err
            raise

    def flush(self) -> None:
        self._file.flush()

    def seal(self) -> None:
        """Make the staged bytes durable before they become visible."""
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()

    def close(self) -> None:
        """Called by pyftpdlib on every path out; anything not published is removed."""
        if not self.done:
            self.discard()

    def discard(self) -> None:
        self.done = True
        try:
            if not self._file.closed:
                # Closing flushes what is buffered, which fails again on a full disk;
                # the bytes are being thrown away, and the file must go regardless.
                self._file.close()
        except OSError:
            pass
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.staging_path)


@dataclass(frozen=True)
class Outcome:
    published: bool
    generation: int | None = None
    finding: Finding | None = None


def complete_upload(upload: StagedUpload, user: str) -> Outcome:
    """Validate, then publish atomically. The caller replies 226 only afterwards."""
    upload.flush()
    finding = check_file(upload.staging_path, upload.virtual, upload.target.name)
    if finding is not None:
        upload.discard()
        deploy_log(upload.site, user, f"rejected {upload.virtual}: {finding.describe()}; "
                   "the previous version stays live")
        return Outcome(published=False, finding=finding)
    upload.seal()
    os.chmod(upload.staging_path, mode_for(upload.site, upload.target))
    own_like_site(upload.staging_path, upload.site)
    os.replace(upload.staging_path, upload.target)
    upload.done = True
    fsync_dir(upload.target.parent)
    generation = bump_generation(upload.site)
    deploy_log(upload.site, user, f"published {upload.virtual} ({upload.size} bytes), "
               f"generation {generation}")
    return Outcome(published=True, generation=generation)


STALE_STAGING_AGE = 3600.0


def sweep_stale_staging(site: Path, now: float | None = None) -> int:
    """Remove staging files left by a gateway that died mid-upload; returns the count.

    Only old files go: a live upload in another session keeps writing to its file.
    """
    now = time.time() if now is None else now
    removed = 0
    for entry in staging_dir(site).glob(".upload-*.part"):
        try:
            if now - entry.lstat().st_mtime > STALE_STAGING_AGE:
                entry.unlink()
                removed += 1
        except FileNotFoundError:
            continue
    return removed


def mode_for(site: Path, target: Path) -> int:
    """Scripts in the cgi root must be executable for the runner's fork/exec mode."""
    try:
        target.relative_to(site / CGI_ROOT)
    except ValueError:
        return FILE_MODE
    return SCRIPT_MODE


def record_change(site: Path, user: str, what: str, parent: Path | None) -> int:
    """A delete, rename or directory change: make it durable, bump, log."""
    if parent is not None:
        fsync_dir(parent)
    generation = bump_generation(site)
    deploy_log(site, user, f"{what}, generation {generation}")
    return generation


_log_lock = threading.Lock()


def deploy_log(site: Path, user: str, message: str) -> None:
    """One line per event, appended with a single write so lines never interleave."""
    line = " ".join(f"{iso_stamp()} {user} {message}".split()) + "\n"
    with _log_lock:
        try:
            # The gateway is root: a deploy.log the owner made a link is refused, not followed.
            fd = open_file(site, deploy_log_path(site), os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                           create_dirs=True)
            try:
                os.write(fd, line.encode("utf-8", "replace"))
            finally:
                os.close(fd)
        except OSError as err:
            # A full disk must not end the session whose upload is being refused.
            _log.warning("cannot write %s (%s): %s", deploy_log_path(site), err.strerror,
                         line.strip())
