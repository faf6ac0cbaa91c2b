"""Compiled scripts and site-local modules, valid while their files are unchanged.

A file is unchanged while its stat signature (inode, device, size, mtime_ns, ctime_ns) is
equal — compared with `!=`, never `>`, because FTP clients can set old timestamps. Stat
alone cannot see a rewrite that lands in the same timestamp tick as the read (the "racy
git" problem: kernels stamp files with a coarse clock); so while a file's ctime is within
RACY_SECONDS of when it was read, its content is compared as well.

Site-local modules (any module whose file lies in the site) are loaded by our own loader,
which compiles from source (a stale .pyc with the same mtime and size would otherwise win)
and keeps the code object while the file is unchanged. Share-nothing, as PHP: a site's
modules are executed afresh by every request that imports them, and dropped after it, so
no state of theirs reaches the next request; only library modules stay loaded. A directory
holding a file named `.cgirt-keep-modules` (or below one, in the site) opts out: its modules
stay loaded between requests, as a long-running app's package wants, if the admin allows it
(`allow_keep_modules`). When any kept module changes, or its opt-in file goes, all of them
are dropped, so a helper that imports another helper is re-executed too. A site
directory's finder (`SiteFinder`) remembers where it found each module while the
directory is unchanged, so importing afresh skips the path search.
"""

from __future__ import annotations

import importlib
import importlib.machinery as machinery
import logging
import os
import sys
import time
from dataclasses import dataclass
from types import CodeType
from typing import Any, Callable

from . import freshness

RACY_SECONDS = 2.0
KEEP_FILE = ".cgirt-keep-modules"
log = logging.getLogger("cgirt.error")

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
    """The site's modules: code objects kept while their files are unchanged; the modules
    themselves dropped after each request, unless their directory keeps them."""

    def __init__(self, site_root: str, allow_keep: bool = True,
                 report: Callable[[str, str], None] | None = None) -> None:
        self.site_root = site_root.rstrip("/") + "/"
        self.allow_keep = allow_keep
        self.report = report  # (file, text): a line for the site's own error log
        self._codes: dict[str, _Entry] = {}  # file path → compiled, for every request
        self._fresh: list[str] = []  # names imported by this request, dropped after it
        self._loaded: dict[str, _Entry] = {}  # kept modules' files → what was executed
        self._keep_files: set[str] = set()  # the opt-in files that kept them
        self._refused: set[str] = set()  # opt-in files already named as refused
        self._names: set[str] = set()
        self._seen_count = 0
        self._keep_dirs: dict[str, str | None] = {}  # this request's answers

    def code(self, name: str, path: str) -> CodeType:
        """The code to execute for module `name` from `path`, compiled only if it changed."""
        entry = self._codes.get(path)
        if entry is None or not _still_valid(entry, path):
            st, source = _read(path)
            entry = _Entry(signature(st), source, _is_racy(st, time.time()),
                           compile(source, path, "exec", dont_inherit=True))
            self._codes[path] = entry
        keep = self._keep_file(path)
        if keep is None:
            self._fresh.append(name)
        else:
            self._loaded[path] = entry
            self._keep_files.add(keep)
        assert entry.code is not None
        return entry.code

    def _keep_file(self, path: str) -> str | None:
        """The opt-in file that keeps a module at `path` loaded, if any (and allowed); looked
        for once per directory and request (a request's helpers share a directory)."""
        directory = os.path.dirname(path)
        if directory in self._keep_dirs:
            return self._keep_dirs[directory]
        found = self._look_for_keep_file(directory)
        self._keep_dirs[directory] = found
        return found

    def _look_for_keep_file(self, directory: str) -> str | None:
        while len(directory) >= len(self.site_root) - 1:
            candidate = directory + "/" + KEEP_FILE
            if os.access(candidate, os.F_OK):
                if self.allow_keep:
                    return candidate
                if candidate not in self._refused:
                    self._refused.add(candidate)
                    text = ("asks to keep modules loaded between requests, which is not allowed "
                            "here (allow_keep_modules); they start fresh on every request")
                    log.warning("%s %s", candidate, text)
                    if self.report is not None:
                        self.report(candidate, text)
                return None
            directory = os.path.dirname(directory)
        return None

    def collect(self) -> None:
        """After a request: drop the site modules it imported (unless kept); remember which
        other sys.modules entries are site-local."""
        self._keep_dirs.clear()
        if self._fresh:
            for name in self._fresh:
                module = sys.modules.pop(name, None)
                parent, _, child = name.rpartition(".")
                package = sys.modules.get(parent) if parent else None
                if package is not None and module is not None and getattr(package, child, None) is module:
                    delattr(package, child)  # as if the submodule had never been imported
            self._fresh.clear()
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
        """Before a request: drop every kept site module if any changed, or its opt-in file
        went. True if dropped."""
        if not self._loaded and not self._names:
            return False
        if (not force and all(_still_valid(e, p) for p, e in self._loaded.items())
                and all(os.access(f, os.F_OK) for f in self._keep_files)):
            return False
        for name in self._names:
            sys.modules.pop(name, None)
        self._names.clear()
        self._loaded.clear()
        self._keep_files.clear()
        self._seen_count = 0
        importlib.invalidate_caches()
        return True


class SiteFinder(machinery.FileFinder):
    """The path entry finder of a site directory: FileFinder's answers, remembered.

    A site's modules are imported afresh by every request, and FileFinder's search (a stat
    of the directory, a path per suffix, a stat of the file, a spec and its cached-file
    name) cost more than executing a small helper. What it found is kept while the
    directory's mtime, FileFinder's own test for a change of its listing, stays the same:
    any file added, removed or renamed in it changes that. Not while the mtime is within
    RACY_SECONDS of now (a change in the same clock tick would not show), nor after
    `importlib.invalidate_caches()` (a publish). Each import still gets a new spec and a
    new loader; an edit to the file itself is the loader's to see (`SiteModules.code`)."""

    _cgirt_site_finder = True  # a finder of the worker's own: kept between requests (interpreter.py)

    def __init__(self, path: str, *loader_details: tuple[type, list[str]]) -> None:
        super().__init__(path, *loader_details)
        # name → (directory mtime, loader class, file, package directories, cached-file name)
        self._found: dict[str, tuple[float, Any, str, list[str] | None, str | None]] = {}

    def invalidate_caches(self) -> None:
        self._found.clear()
        super().invalidate_caches()

    def find_spec(self, fullname: str, target: Any = None) -> Any:
        try:
            mtime = freshness.stat(self.path or os.getcwd()).st_mtime
        except OSError:
            mtime = -1.0
        found = self._found.get(fullname)
        if found is not None and found[0] == mtime and target is None:
            _, loader_class, origin, locations, cached = found
            fresh = machinery.ModuleSpec(fullname, loader_class(fullname, origin), origin=origin,
                                         is_package=locations is not None)
            fresh.has_location = True
            fresh.submodule_search_locations = None if locations is None else list(locations)
            fresh.cached = cached
            return fresh
        spec = super().find_spec(fullname, target)
        if (spec is not None and spec.loader is not None and spec.has_location
                and isinstance(spec.origin, str) and time.time() - mtime >= RACY_SECONDS):
            locations = spec.submodule_search_locations
            self._found[fullname] = (mtime, type(spec.loader), spec.origin,
                                     None if locations is None else list(locations), spec.cached)
        else:
            self._found.pop(fullname, None)
        return spec


def install_site_loader(site_modules: SiteModules) -> None:
    """Make imports from inside the site go through a recording, always-from-source loader."""

    class SiteSourceLoader(machinery.SourceFileLoader):
        def get_code(self, fullname: str) -> CodeType:
            return site_modules.code(fullname, self.path)

    make_finder: Callable[[str], Any] = SiteFinder.path_hook(
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
