"""Interpreter-wide settings: captured, changed as a script would, restored, item by item."""

from __future__ import annotations

import builtins
import decimal
import gc
import importlib.machinery
import json
import locale
import logging
import os
import resource
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from typing import Any, Callable, Iterator

import pytest

from cgirt.runner.interpreter import InterpreterState


class _Finder:
    def find_spec(self, *args: Any) -> None:
        return None


def _loggers() -> Any:
    manager = logging.Logger.manager
    return (manager.disable, sorted(manager.loggerDict), [
        (lg.name, lg.level, lg.disabled, lg.propagate, list(lg.handlers), list(lg.filters), lg.parent)
        for lg in [logging.root, *manager.loggerDict.values()] if isinstance(lg, logging.Logger)])


def _decimal() -> Any:
    return repr(decimal.getcontext()), decimal.getcontext(), repr(decimal.DefaultContext)


def _set_tz() -> None:
    os.environ["TZ"] = "JST-9"
    time.tzset()
    del os.environ["TZ"]  # as the sandbox puts the worker's environment back


def _new_logger() -> None:
    logging.getLogger("cgirt.tests.new.logger").addHandler(logging.NullHandler())
    logging.getLogger("cgirt.tests").setLevel(logging.DEBUG)


# (item, what a script does, what must read the same afterwards)
ITEMS: list[tuple[str, Callable[[], object], Callable[[], object]]] = [
    ("recursion limit", lambda: sys.setrecursionlimit(4321), sys.getrecursionlimit),
    ("switch interval", lambda: sys.setswitchinterval(0.5), sys.getswitchinterval),
    ("int max str digits", lambda: sys.set_int_max_str_digits(640), sys.get_int_max_str_digits),
    ("socket timeout", lambda: socket.setdefaulttimeout(3.5), socket.getdefaulttimeout),
    ("warnings filter", lambda: warnings.simplefilter("error"), lambda: list(warnings.filters)),
    ("warnings list rebound", lambda: setattr(warnings, "filters", []),
     lambda: (warnings.filters, list(warnings.filters))),
    ("showwarning", lambda: setattr(warnings, "showwarning", print), lambda: warnings.showwarning),
    ("__import__", lambda: setattr(builtins, "__import__", lambda *a: None), lambda: builtins.__import__),
    ("a builtin rebound", lambda: setattr(builtins, "open", print), lambda: builtins.open),
    ("a builtin added", lambda: setattr(builtins, "_", str), lambda: hasattr(builtins, "_")),
    ("meta_path", lambda: sys.meta_path.insert(0, _Finder()), lambda: list(sys.meta_path)),
    ("meta_path rebound", lambda: setattr(sys, "meta_path", []),
     lambda: (sys.meta_path, list(sys.meta_path))),
    ("path_hooks", lambda: sys.path_hooks.insert(0, importlib.machinery.FileFinder.path_hook()),
     lambda: list(sys.path_hooks)),
    ("path_importer_cache entry", lambda: sys.path_importer_cache.__setitem__("/x", _Finder()),
     lambda: dict(sys.path_importer_cache)),
    ("path_importer_cache cleared", sys.path_importer_cache.clear, lambda: dict(sys.path_importer_cache)),
    ("logger handler", lambda: logging.getLogger("cgirt.error").addHandler(logging.NullHandler()), _loggers),
    ("root level", lambda: logging.getLogger().setLevel(logging.DEBUG), _loggers),
    ("logger disabled", lambda: setattr(logging.getLogger("cgirt.error"), "disabled", True), _loggers),
    ("logger propagate", lambda: setattr(logging.getLogger("cgirt.error"), "propagate", False), _loggers),
    ("logging.disable", lambda: logging.disable(logging.CRITICAL), _loggers),
    ("new loggers", _new_logger, _loggers),
    ("locale", lambda: locale.setlocale(locale.LC_ALL, "C"), lambda: locale.setlocale(locale.LC_ALL)),
    ("TZ and tzset", _set_tz, lambda: (time.tzname, time.timezone, time.localtime(0))),
    ("decimal precision", lambda: setattr(decimal.getcontext(), "prec", 5), _decimal),
    ("decimal flags", lambda: decimal.Decimal(1) / decimal.Decimal(3), _decimal),
    ("decimal traps", lambda: decimal.getcontext().traps.__setitem__(decimal.Inexact, True), _decimal),
    ("decimal context", lambda: decimal.setcontext(decimal.Context(prec=3)), _decimal),
    ("decimal default", lambda: setattr(decimal.DefaultContext, "prec", 7), _decimal),
    ("settrace", lambda: sys.settrace(lambda *a: None), sys.gettrace),
    ("setprofile", lambda: sys.setprofile(lambda *a: None), sys.getprofile),
    ("threading.settrace", lambda: threading.settrace(lambda *a: None),
     lambda: threading._trace_hook),  # type: ignore[attr-defined]
    ("gc disabled", gc.disable, gc.isenabled),
    ("gc threshold", lambda: gc.set_threshold(5000, 20, 20), gc.get_threshold),
    ("gc callbacks", lambda: gc.callbacks.append(lambda *a: None), lambda: list(gc.callbacks)),
    ("tempfile.tempdir", lambda: setattr(tempfile, "tempdir", "/nowhere"), lambda: tempfile.tempdir),
    ("displayhook", lambda: setattr(sys, "displayhook", print), lambda: sys.displayhook),
    ("unraisablehook", lambda: setattr(sys, "unraisablehook", print), lambda: sys.unraisablehook),
    ("soft resource limit", lambda: resource.setrlimit(
        resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1])),
     lambda: resource.getrlimit(resource.RLIMIT_NOFILE)),
]


@pytest.fixture
def pristine() -> Iterator[None]:
    """Whatever a failed restore leaves behind must not reach the other tests."""
    saved = (sys.getrecursionlimit(), socket.getdefaulttimeout(), list(warnings.filters),
             builtins.__import__, list(sys.meta_path), list(sys.path_hooks),
             locale.setlocale(locale.LC_ALL), gc.isenabled(), gc.get_threshold(),
             decimal.getcontext().copy())
    # Whatever ran before (an in-process runner's stop empties it): clearing must change it.
    sys.path_importer_cache.setdefault("/cgirt-test/not-on-sys.path", None)
    yield
    sys.setrecursionlimit(saved[0])
    socket.setdefaulttimeout(saved[1])
    warnings.filters[:] = saved[2]
    builtins.__import__ = saved[3]
    sys.meta_path[:] = saved[4]
    sys.path_hooks[:] = saved[5]
    locale.setlocale(locale.LC_ALL, saved[6])
    (gc.enable if saved[7] else gc.disable)()
    gc.set_threshold(*saved[8])
    decimal.setcontext(saved[9])
    sys.settrace(None)
    sys.setprofile(None)


@pytest.mark.parametrize("item, change, read", ITEMS, ids=[i[0] for i in ITEMS])
def test_each_item_is_put_back(pristine: None, item: str, change: Callable[[], object],
                               read: Callable[[], object]) -> None:
    logging.getLogger("cgirt.error")
    state = InterpreterState()
    before = read()
    change()
    assert read() != before, "the change did not change anything: the test proves nothing"
    assert state.restore() == []
    assert read() == before
    assert state.reading() == state.saved


def test_handlers_a_script_added_are_closed(pristine: None, tmp_path: Any) -> None:
    state = InterpreterState()
    handler = logging.FileHandler(tmp_path / "script.log")
    logging.getLogger("cgirt.tests.files").addHandler(handler)
    logging.getLogger("cgirt.tests.files").warning("kept")
    state.restore()
    assert handler.stream is None  # closed, as a process's exit would
    assert (tmp_path / "script.log").read_text() == "kept\n"


def test_new_directories_finders_are_kept(pristine: None, tmp_path: Any) -> None:
    """Each script's directory gets a finder on its first import: not a change to undo."""
    state = InterpreterState()
    (tmp_path / "cgirt_tests_mod.py").write_text("X = 1\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import cgirt_tests_mod  # noqa: F401
        finder = sys.path_importer_cache[str(tmp_path)]
        assert state.restore() == []
        assert sys.path_importer_cache[str(tmp_path)] is finder
        assert state.reading() == state.saved
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("cgirt_tests_mod", None)


def test_an_untouched_interpreter_costs_little(pristine: None) -> None:
    """The check after a request that changed nothing: one tuple read and compared."""
    state = InterpreterState()
    runs = 2000
    t0 = time.process_time()
    for _ in range(runs):
        state.restore()
    per_request = (time.process_time() - t0) / runs
    assert per_request < 50e-6  # about 3 µs here; generous for a loaded machine


IRREVERSIBLE = """
import os, resource, sys
from cgirt.runner.interpreter import InterpreterState
state = InterpreterState()
assert state.restore() == []
{change}
print(state.restore())
assert state.restore() == [], "reported once"
"""


@pytest.mark.parametrize("change, expected", [
    ("os.nice(1)", "raised the niceness to {n}"),
    ("resource.setrlimit(resource.RLIMIT_FSIZE, (2 ** 40, 2 ** 40))",
     "lowered the hard limit RLIMIT_FSIZE to 1099511627776"),
])
def test_what_cannot_be_put_back_is_reported(change: str, expected: str) -> None:
    """In a process of its own: neither can be undone in this one either."""
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(IRREVERSIBLE.format(change=change))],
                         capture_output=True, text=True, check=True).stdout
    assert expected.format(n=os.nice(0) + 1) in out
    assert "this worker will be replaced after the response" in out


def test_json_attribute_is_not_an_interpreter_setting(pristine: None) -> None:
    """Library modules are libwatch's business: the interpreter state ignores them."""
    state = InterpreterState()
    json.cgirt_test_leftover = 1  # type: ignore[attr-defined]
    try:
        assert state.restore() == []
    finally:
        del json.cgirt_test_leftover  # type: ignore[attr-defined]


def test_a_lazy_finder_a_script_left_is_dropped(pristine: None, tmp_path: Any) -> None:
    """What demandimport leaves for a directory: the next script's imports must not be lazy."""
    import importlib.util
    state = InterpreterState()
    lazy = importlib.util.LazyLoader.factory(importlib.machinery.SourceFileLoader)
    sys.path_importer_cache[str(tmp_path)] = importlib.machinery.FileFinder(str(tmp_path), (lazy, [".py"]))
    assert state.restore() == []
    assert str(tmp_path) not in sys.path_importer_cache
