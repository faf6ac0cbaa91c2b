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
import secrets
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
    staging_dir,
)

from cgirt.logfiles import iso_stamp, owned_like
from cgirt.sitefiles import open_dir, open_file

from .errors import DiskFull, FileTooLarge, QuotaExceeded
from .validate import Finding, check_file

_log = logging.getLogger("cgirt.ftp")

SCRIPT_MODE = 0o755
FILE_MODE = 0o644


class StagedUpload:
    """A staging file with limits enforced as the bytes arrive.

    `name` is the final path (pyftpdlib logs it); the bytes go to `staging_path`,
    created (O_EXCL, mode 0600) inside the site's staging directory, on the same
    filesystem so that os.replace is atomic.

    The gateway is root and the site's owner can swap any folder of the site, `.cgirt/`
    included, for a link meanwhile: the staged file is created, checked, given its mode
    and renamed through descriptors (the file's own, its folders' reached through no
    link), never through a path that could lead elsewhere.
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
        fd, staged = _create_staged(site)
        self._file = os.fdopen(fd, "w+b")  # read back by the check, through this inode
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

    def reading_path(self) -> Path:
        """The staged bytes, by this very inode whatever its folders' names lead to now."""
        return Path(f"/proc/self/fd/{self._file.fileno()}")

    def seal(self, mode: int) -> None:
        """Make the staged bytes durable, with their mode and owner, before they become
        visible."""
        self._file.flush()
        fd = self._file.fileno()
        os.fchmod(fd, mode)
        owned_like(self.site)(fd)
        os.fsync(fd)
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
            # A staging folder swapped for a link: left to the sweep of stale files.
            with contextlib.suppress(OSError):
                folder = open_dir(self.site, self.staging_path.parent)
                try:
                    os.unlink(self.staging_path.name, dir_fd=folder)
                finally:
                    os.close(folder)


@dataclass(frozen=True)
class Outcome:
    published: bool
    generation: int | None = None
    finding: Finding | None = None


def complete_upload(upload: StagedUpload, user: str) -> Outcome:
    """Validate, then publish atomically. The caller replies 226 only afterwards."""
    upload.flush()
    finding = check_file(upload.reading_path(), upload.virtual, upload.target.name)
    if finding is not None:
        upload.discard()
        deploy_log(upload.site, user, f"rejected {upload.virtual}: {finding.describe()}; "
                   "the previous version stays live")
        return Outcome(published=False, finding=finding)
    upload.seal(mode_for(upload.site, upload.target))
    # The target's folder as resolved now (a link inside the site is the site's own), then
    # reached through no link: one swapped in meanwhile is refused, never followed.
    staging = open_dir(upload.site, upload.staging_path.parent)
    try:
        folder = open_dir(Path(os.path.realpath(upload.site)),
                          Path(os.path.realpath(upload.target.parent)))
        try:
            os.replace(upload.staging_path.name, upload.target.name,
                       src_dir_fd=staging, dst_dir_fd=folder)
            upload.done = True
            os.fsync(folder)
        finally:
            os.close(folder)
    finally:
        os.close(staging)
    try:
        generation: int | None = bump_generation(upload.site)
    except OSError as err:
        # The new file is in place: a 451 "not published" would be false. The runners
        # still see it by its stat signature, maybe not on the very next request.
        _log.warning("%s published, but the generation was not bumped: %s", upload.virtual,
                     err.strerror)
        generation = None
    deploy_log(upload.site, user, f"published {upload.virtual} ({upload.size} bytes), "
               + (f"generation {generation}" if generation is not None else
                  "but the generation could not be bumped (see the gateway's log)"))
    return Outcome(published=True, generation=generation)


STALE_STAGING_AGE = 3600.0


def _create_staged(site: Path) -> tuple[int, Path]:
    folder = open_dir(site, staging_dir(site), create=True)
    try:
        for _ in range(100):
            name = f".upload-{secrets.token_hex(8)}.part"
            try:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, 0o600, dir_fd=folder)
            except FileExistsError:
                continue
            return fd, staging_dir(site) / name
        raise FileExistsError(f"no free staging name in {staging_dir(site)}")
    finally:
        os.close(folder)


def sweep_stale_staging(site: Path, now: float | None = None) -> int:
    """Remove staging files left by a gateway that died mid-upload; returns the count.

    Only old files go: a live upload in another session keeps writing to its file.
    """
    now = time.time() if now is None else now
    removed = 0
    folder = open_dir(site, staging_dir(site))  # root: not a folder a link leads to
    try:
        for name in os.listdir(folder):
            if not (name.startswith(".upload-") and name.endswith(".part")):
                continue
            try:
                if now - os.stat(name, dir_fd=folder, follow_symlinks=False).st_mtime \
                        > STALE_STAGING_AGE:
                    os.unlink(name, dir_fd=folder)
                    removed += 1
            except FileNotFoundError:
                continue
    finally:
        os.close(folder)
    return removed


def mode_for(site: Path, target: Path) -> int:
    """Scripts in the cgi root must be executable for the runner's fork/exec mode."""
    try:
        target.relative_to(site / CGI_ROOT)
    except ValueError:
        return FILE_MODE
    return SCRIPT_MODE


def record_change(site: Path, user: str, what: str, parent: Path | None) -> int | None:
    """A delete, rename or directory change: make it durable, bump, log. The change is
    done: a bump refused (a link the owner planted in `.cgirt/`) is logged, not raised, or
    the client would be told it failed (and, from its strerror, the server's disk path)."""
    try:
        if parent is not None:
            fsync_dir(parent)
        generation = bump_generation(site)
    except OSError as err:
        _log.warning("%s, but the generation was not bumped: %s", what, err.strerror)
        deploy_log(site, user, f"{what}, but the generation could not be bumped (see the "
                   "gateway's log)")
        return None
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
