"""Library modules the site's code writes to: noticed at the write, the worker replaced.

The next request must not see `json.X = ...`: the worker is replaced after the response.

Each library module (a plain module whose file is outside the site) gets a subclass of
ModuleType whose attribute writes note who wrote: code from the site (a script or one of its
modules) setting or deleting an attribute is noted; a library doing it (a lazy attribute,
`mock.patch`, an import binding a submodule to its package) is not. Nothing is read or
compared after a request: the cost is the check of a list, and a little more per write.

Why not a fingerprint of every library namespace after each request: a worker holds some
200 library modules with tens of thousands of names, which takes hundreds of microseconds
to compare, and a library's own lazy initialisation (`tempfile` choosing its directory,
`mimetypes.init()`) changes its globals on first use, which would replace workers forever.

Not seen: a write through the namespace itself (`json.__dict__["x"] = 1`, `vars(json)`),
changes inside objects a library holds (class attributes, its lists and dicts), writes done
by library code on the script's behalf (`gevent.monkey.patch_all()`), modules whose class
is not plain ModuleType, and library modules first imported during a request until that
request has ended.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

# Not watched: restored after every request by ProcessState and InterpreterState, or the
# namespace of the request itself. Nor the runner's own modules: attribute reads on a
# watched module are slower (the interpreter specialises them for plain modules only), and
# the runner reads its own on every request.
_NOT_WATCHED = frozenset({"sys", "builtins", "__main__", "atexit"})
_NOT_WATCHED_PACKAGES = ("cgirt.", "flup.")
# Documented settings that are put back after every request, so writing them is fine.
RESTORED = frozenset({
    ("cgi", "maxlen"), ("tempfile", "tempdir"), ("tempfile", "template"),
    ("warnings", "filters"), ("warnings", "showwarning"), ("warnings", "formatwarning"),
    ("warnings", "defaultaction"),
})


class LibraryWatch:
    """Built in the worker (it changes every library module's class); `changes` after each
    request."""

    def __init__(self, site_root: str) -> None:
        self.site_root = site_root.rstrip("/") + "/"
        self.written: list[tuple[str, str]] = []
        self._seen = 0
        self._class = _watching_class(self)
        self.watch_new()

    def watch_new(self) -> None:
        """Watch library modules imported since the last call (before each request: the
        site's own modules of the last request are gone by then)."""
        if len(sys.modules) == self._seen:
            return
        self._seen = len(sys.modules)
        site = self.site_root
        for name, module in list(sys.modules.items()):
            if (type(module) is not ModuleType or name in _NOT_WATCHED
                    or name.startswith(_NOT_WATCHED_PACKAGES) or name in ("cgirt", "flup")):
                continue  # already watched, a module with a class of its own, or ours
            filename = module.__dict__.get("__file__")
            if isinstance(filename, str) and filename.startswith(site):
                continue
            module.__class__ = self._class

    def close(self) -> None:
        """Stop watching (a worker never does; tests do)."""
        for module in list(sys.modules.values()):
            if type(module) is self._class:
                module.__class__ = ModuleType
        self._seen = 0

    def changes(self) -> list[tuple[str, str]]:
        """(module, attribute) the site's code wrote since the last call."""
        if not self.written:
            return []
        written, self.written = self.written, []
        return list(dict.fromkeys(written))


def _watching_class(watch: LibraryWatch) -> type[ModuleType]:
    set_attr, del_attr = ModuleType.__setattr__, ModuleType.__delattr__

    def note(module: ModuleType, name: str, value: Any) -> None:
        module_name = module.__dict__.get("__name__", "?")
        if (module_name, name) in RESTORED:
            return
        if isinstance(value, ModuleType) and sys.modules.get(f"{module_name}.{name}") is value:
            return  # an import binding a submodule to its package
        watch.written.append((module_name, name))

    class WatchedModule(ModuleType):
        __slots__ = ()

        # Frame 1 is whoever wrote (setattr() itself has no frame).
        def __setattr__(self, name: str, value: Any) -> None:
            if sys._getframe(1).f_code.co_filename.startswith(watch.site_root):
                note(self, name, value)
            set_attr(self, name, value)

        def __delattr__(self, name: str) -> None:
            if sys._getframe(1).f_code.co_filename.startswith(watch.site_root):
                note(self, name, None)
            del_attr(self, name)

    WatchedModule.__name__ = WatchedModule.__qualname__ = "module"
    return WatchedModule
