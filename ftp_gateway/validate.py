"""Checks run on an upload before it is published: Python scripts must compile.

Which scripts are Python is the site contract's rule (`cgirt.site.is_python`), the one the
runner uses to decide to run a script in-process.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cgirt.site import is_python


@dataclass(frozen=True)
class Finding:
    """One problem found in a script: `line` is 0 when unknown."""

    path: str
    line: int
    message: str

    def describe(self) -> str:
        where = f"{self.path}, line {self.line}" if self.line else self.path
        return f"{where}: {self.message}"


def check_source(source: bytes, display_name: str) -> Finding | None:
    """Compile without running; None if the source compiles.

    `compile` on bytes honours PEP 263 coding cookies exactly as the runner will.
    """
    try:
        compile(source, display_name, "exec", dont_inherit=True)
    except SyntaxError as err:
        message = f"{type(err).__name__}: {err.msg}"
        return Finding(display_name, err.lineno or 0, message)
    except ValueError as err:  # NUL bytes before Python 3.12
        return Finding(display_name, 0, f"SyntaxError: {err}")
    return None


def check_file(path: Path, display_name: str, name: str | None = None) -> Finding | None:
    """Check one file on disk if it is a Python script.

    `name` is the file's final name when `path` is a staging file.
    """
    with open(path, "rb") as f:
        source = f.read()
    if not is_python(name or path.name, source[:256]):
        return None
    return check_source(source, display_name)


def python_files(root: Path, skip: Path) -> Iterator[Path]:
    """Python scripts under root, not following symlinks and never entering `skip`."""
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if here / d != skip)
        for name in sorted(filenames):
            path = here / name
            if path.is_symlink() or not path.is_file():
                continue
            try:  # a FIFO swapped in meanwhile must not block (root reads this head)
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                if not stat.S_ISREG(os.fstat(fd).st_mode):
                    continue
                head = os.read(fd, 256)
            except OSError:
                continue
            finally:
                os.close(fd)
            if is_python(name, head):
                yield path
