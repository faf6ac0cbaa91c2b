"""Compiled scripts and site-local modules, valid while their files are unchanged.

A file is unchanged while its stat signature (inode, device, size, mtime_ns, ctime_ns) is
equal — compared with `!=`, never `>`, because FTP clients can set old timestamps. Stat
alone cannot see a rewrite that lands in the same timestamp tick as the read (the "racy
git" problem: kernels stamp files with a coarse clock); so while a file's ctime is within
RACY_SECONDS of when it was read, its content is compared as well.

Site-local modules (any module whose file lies in the site) are loaded by our own loader,
which always compiles from source (a stale .pyc with the same mtime and size would
otherwise win) and records the signature and source it executed. When any of a site's
modules changes, all of them are dropped, so a helper that imports another helper is
re-executed too.
"""

from __future__ import annotations

import importlib
import importlib.machinery as machinery
import os
import sys
import time
from dataclasses import dataclass
from types import CodeType
from typing import Any, Callable

from . import freshness

RACY_SECONDS = 2.0

Signature = tuple[int, int, int, int, int]


def signature(st: os.stat_result) -> Signature:
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass
class _Entry:
    sig: Signature
    source: bytes
    racy: bool
    code: CodeType | None = None


def _is_racy(st: os.stat_result, now: float) -> bool:
    return now - st.st_ctime < RACY_SECONDS


def _read(path: str) -> tuple[os.stat_result, bytes]:
    with open(path, "rb") as f:
        st = freshness.fstat_of(path, f.fileno())
        return st, f.read()


def _still_valid(entry: _Entry, path: str, st: os.stat_result | None = None) -> bool:
    if st is None:
        try:
            st = freshness.stat(path)
        except OSError:
            return False
    if signature(st) != entry.sig:
        return False
    if entry.racy:
        try:
            with open(path, "rb") as f:
                if f.read() != entry.source:
                    return False
        except OSError:
            return False
        entry.racy = _is_racy(st, time.time())
    return True


class ScriptCache:
    """Path → compiled code object of a script."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def get(self, path: str, st: os.stat_result | None = None) -> CodeType:
        """The script's code; `st` is the file's stat taken for this request, if there is one."""
        entry = self._entries.get(path)
        if entry is not None and _still_valid(entry, path, st):
            assert entry.code is not None
            return entry.code
        st, source = _read(path)
        code = compile(source, path, "exec", dont_inherit=True)
        self._entries[path] = _Entry(signature(st), source, _is_racy(st, time.time()), code)
        return code

    def source(self, path: str) -> bytes | None:
        entry = self._entries.get(path)
        return entry.source if entry else None

    def clear(self) -> None:
        self._entries.clear()


class SiteModules:
    """Tracks the modules a site's scripts imported and drops them when one changes."""

    def __init__(self, site_root: str) -> None:
        self.site_root = site_root.rstrip("/") + "/"
        self._loaded: dict[str, _Entry] = {}  # file path → what was executed
        self._names: set[str] = set()
        self._seen_count = 0

    def record(self, path: str, st: os.stat_result, source: bytes) -> None:
        self._loaded[path] = _Entry(signature(st), source, _is_racy(st, time.time()))

    def collect(self) -> None:
        """After a request: remember which sys.modules entries are site-local."""
        if len(sys.modules) == self._seen_count:
            return  # cheap common case: the request imported nothing new
        self._seen_count = len(sys.modules)
        for name, module in list(sys.modules.items()):
            if name in self._names:
                continue
            filename = getattr(module, "__file__", None)
            if isinstance(filename, str) and filename.startswith(self.site_root):
                self._names.add(name)

    def refresh(self, force: bool = False) -> bool:
        """Before a request: drop every site module if any changed. True if dropped."""
        if not self._loaded and not self._names:
            return False
        if not force and all(_still_valid(e, p) for p, e in self._loaded.items()):
            return False
        for name in self._names:
            sys.modules.pop(name, None)
        self._names.clear()
        self._loaded.clear()
        self._seen_count = 0
        importlib.invalidate_caches()
        return True


def install_site_loader(site_modules: SiteModules) -> None:
    """Make imports from inside the site go through a recording, always-from-source loader."""

    class SiteSourceLoader(machinery.SourceFileLoader):
        def get_code(self, fullname: str) -> CodeType:
            st, source = _read(self.path)
            site_modules.record(self.path, st, source)
            return compile(source, self.path, "exec", dont_inherit=True)

    make_finder: Callable[[str], Any] = machinery.FileFinder.path_hook(
        (machinery.ExtensionFileLoader, machinery.EXTENSION_SUFFIXES),
        (SiteSourceLoader, machinery.SOURCE_SUFFIXES),
    )
    root = site_modules.site_root

    def site_hook(path: str) -> Any:
        real = os.path.realpath(path or ".") + "/"
        if not real.startswith(root):
            raise ImportError("not a site directory")
        return make_finder(path)

    sys.path_hooks.insert(0, site_hook)
    sys.path_importer_cache.clear()
    sys.dont_write_bytecode = True  # never litter a site with __pycache__ directories
