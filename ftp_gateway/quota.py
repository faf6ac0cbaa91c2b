"""Per-site quota: how much room an upload has, computed when it starts.

Usage is measured by walking the site (not following symlinks, skipping the state
directory) when each upload starts; sites maintained over FTP are small, and a stored
counter would drift whenever the owner's files change by other means. Two uploads to
the same site at the same moment may each see the same room: the quota is a guard
against runaway uploads, not an accounting system.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from cgirt.site import state_dir

from .errors import QuotaExceeded


@dataclass(frozen=True)
class Usage:
    bytes: int
    files: int


def measure(site: Path) -> Usage:
    total = count = 0
    skip = state_dir(site)
    for dirpath, dirnames, filenames in os.walk(site):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if here / d != skip]
        for name in filenames:
            try:
                st = os.lstat(here / name)
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
                count += 1
    return Usage(total, count)


def room_for(site: Path, target: Path, quota_bytes: int, quota_files: int,
             virtual: str) -> int | None:
    """Bytes this upload may write (None: unlimited); raise if it may not start at all."""
    if not quota_bytes and not quota_files:
        return None
    usage = measure(site)
    replaced = _regular_size(target)
    if quota_files and replaced is None and usage.files + 1 > quota_files:
        raise QuotaExceeded(f"{virtual}: the site already holds {usage.files} files, "
                            f"the quota is {quota_files}.")
    if not quota_bytes:
        return None
    room = quota_bytes - (usage.bytes - (replaced or 0))
    if room < 0:
        raise QuotaExceeded(f"{virtual}: the site is over its quota of {quota_bytes} bytes.")
    return room


def _regular_size(path: Path) -> int | None:
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_size if stat.S_ISREG(st.st_mode) else None
