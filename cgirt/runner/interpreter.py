"""Interpreter-wide settings: captured at worker start, put back after every request.

What a fresh CGI process would have started with: the import machinery, logging, warnings,
locale, TZ, decimal, trace functions, gc, resource limits and the rest (README lists them).
After a request that changed nothing (most of them) one tuple is read and compared;
settings changed only through a function (`sys.setrecursionlimit`, `socket.setdefaulttimeout`,
`gc.disable`, `time.tzset`, `locale.setlocale`, `resource.setrlimit`, `os.nice`, ...) are read
only after a request that called one: those functions are wrapped at capture to note the
call (C code calling the C functions directly goes unnoticed). Two settings cannot always
be put back: a niceness raised (going down again needs privilege) and a hard resource limit
lowered. Those are reported, and the worker is replaced after the response.
"""

from __future__ import annotations

import _locale
import builtins
import gc
import importlib.machinery as machinery
import locale
import logging
import os
import resource
import socket
import sys
import tempfile
import threading
import time
import warnings
from operator import attrgetter, itemgetter
from typing import Any, Callable

_RLIMITS = tuple(sorted({getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_")}))
_RLIMIT_NAMES = {getattr(resource, n): n for n in dir(resource) if n.startswith("RLIMIT_")}
_DECIMAL_FIELDS = ("prec", "rounding", "Emin", "Emax", "capitals", "clamp")
_SYS_HOOKS = ("displayhook", "breakpointhook", "unraisablehook")
_gc_callbacks = gc.callbacks
_modules = sys.modules
# Namespaces, read with itemgetter: a module attribute costs several times a dict item.
_SYS, _THREADING, _WARNINGS, _BUILTINS, _TEMPFILE, _LOGGING = map(
    vars, (sys, threading, warnings, builtins, tempfile, logging))
# The last two are lists: _saved_reading copies them.
_SYS_ITEMS = itemgetter("dont_write_bytecode", "displayhook", "breakpointhook", "unraisablehook",
                        "meta_path", "path_hooks")
_THREADING_ITEMS = itemgetter("excepthook")
_WARNINGS_ITEMS = itemgetter("filters", "showwarning", "formatwarning", "defaultaction")
_WARNINGS_HOOKS = itemgetter("showwarning", "formatwarning", "defaultaction")
# The builtins scripts and the libraries they call replace (demandimport, sandboxes,
# gettext.install adds `_`, which the length shows): reading all 150 costs more than the
# rest together.
_BUILTIN_ITEMS = itemgetter("__import__", "__build_class__", "open", "print", "input", "compile",
                            "exec", "eval")
_TEMPFILE_ITEMS = itemgetter("tempdir", "template")
_DECIMAL_ATTRS = attrgetter("prec", "rounding", "Emin", "Emax", "capitals", "clamp", "flags", "traps")
# DefaultContext only matters to contexts made later: its precision and traps are what
# scripts change.
_DEFAULT_ATTRS = attrgetter("prec", "traps")
_MANAGER_ITEMS = itemgetter("_disable")
_LOGGER_ITEMS = itemgetter("level", "disabled", "propagate", "parent", "handlers", "filters")


def _decimal_settings(ctx: Any) -> tuple[Any, ...]:
    return (*(getattr(ctx, f) for f in _DECIMAL_FIELDS),
            tuple(s.__name__ for s, on in ctx.traps.items() if on),
            tuple(s.__name__ for s, on in ctx.flags.items() if on))


class _Calls:
    """Notes that one of the wrapped functions was called since the last restore."""

    def __init__(self) -> None:
        self.seen = False

    def wrap(self, module: Any, name: str) -> None:
        original = getattr(module, name, None)
        if original is None or getattr(original, "_cgirt_original", None) is not None:
            return  # not on this platform, or wrapped already (a second capture)

        def noting(*args: Any, **kwargs: Any) -> Any:
            self.seen = True
            return original(*args, **kwargs)
        noting.__name__ = original.__name__
        noting.__qualname__ = original.__qualname__
        noting.__doc__ = original.__doc__
        noting._cgirt_original = original  # type: ignore[attr-defined]
        setattr(module, name, noting)


# One per process, as the functions they wrap.
_LOCALE_CALLS = _Calls()
_LIMIT_CALLS = _Calls()
_SETTINGS_CALLS = _Calls()
# Settings changed only by calling a function: the call is noted, so that after a request
# that called none of them (nearly all) nothing is read.
_SETTERS = ((sys, "setrecursionlimit"), (sys, "setswitchinterval"), (sys, "set_int_max_str_digits"),
            (sys, "settrace"), (sys, "setprofile"), (threading, "settrace"), (threading, "setprofile"),
            (threading, "settrace_all_threads"), (threading, "setprofile_all_threads"),
            (socket, "setdefaulttimeout"), (gc, "disable"), (gc, "enable"), (gc, "set_threshold"),
            (gc, "set_debug"), (time, "tzset"))


class _Loggers:
    """Every logger's level, handlers, filters, disabled flag, propagate and parent."""

    def __init__(self) -> None:
        manager = logging.Logger.manager
        self.manager = manager
        self.logger_dict = dict(manager.loggerDict)
        self.disable = manager.disable
        self.logger_class = logging.getLoggerClass()
        self.loggers: list[logging.Logger] = [logging.root] + [
            lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger)]
        self.state = self.read()
        self.handlers = {h for lg in self.loggers for h in lg.handlers}
        self.manager_vars = vars(manager)
        self.logger_vars = [vars(lg) for lg in self.loggers]

    def read(self) -> list[tuple[Any, ...]]:
        return [(lg.level, lg.disabled, lg.propagate, lg.parent, *lg.handlers, None, *lg.filters)
                for lg in self.loggers]

    def changed(self) -> bool:
        return (self.manager.disable != self.disable or len(self.manager.loggerDict) != len(self.logger_dict)
                or self.read() != self.state)

    def restore(self) -> None:
        manager = self.manager
        added = [lg for name, lg in manager.loggerDict.items()
                 if self.logger_dict.get(name) is not lg and isinstance(lg, logging.Logger)]
        manager.loggerDict.clear()
        manager.loggerDict.update(self.logger_dict)
        manager.disable = self.disable
        for lg, (level, disabled, propagate, parent, *rest) in zip(self.loggers, self.state):
            cut = rest.index(None)
            stray = [h for h in lg.handlers if h not in self.handlers]
            lg.level, lg.disabled, lg.propagate, lg.parent = level, disabled, propagate, parent
            lg.handlers[:] = rest[:cut]
            lg.filters[:] = rest[cut + 1:]
            _close(stray)
        for lg in added:  # a script's own loggers: their handlers would live on elsewhere
            _close([h for h in lg.handlers if h not in self.handlers])
        if logging.getLoggerClass() is not self.logger_class:
            logging.setLoggerClass(self.logger_class)
        manager._clear_cache()  # type: ignore[attr-defined]


def _close(handlers: list[logging.Handler]) -> None:
    """Handlers a script added: closed, as its process's exit would (files flushed)."""
    for h in handlers:
        try:
            h.close()
        except Exception:  # noqa: BLE001 - a script's handler failing to close is its own
            pass


class InterpreterState:
    """Captured once (in the worker, before any script runs); `restore` after each request."""

    def __init__(self) -> None:
        self.recursion_limit = sys.getrecursionlimit()
        self.switch_interval = sys.getswitchinterval()
        self.int_max_str_digits = sys.get_int_max_str_digits()
        self.dont_write_bytecode = sys.dont_write_bytecode
        self.sys_hooks = tuple(getattr(sys, n) for n in _SYS_HOOKS)
        self.trace = sys.gettrace(), sys.getprofile()
        self.thread_hooks = (threading._trace_hook, threading._profile_hook,  # type: ignore[attr-defined]
                             threading.excepthook)
        self.socket_timeout = socket.getdefaulttimeout()
        self.warnings_filters = warnings.filters
        self.warnings_saved = list(warnings.filters)
        self.warnings_hooks = _WARNINGS_HOOKS(_WARNINGS)
        self.import_hook = builtins.__import__
        self.builtins = dict(builtins.__dict__)
        self.meta_path, self.meta_path_saved = sys.meta_path, list(sys.meta_path)
        self.path_hooks, self.path_hooks_saved = sys.path_hooks, list(sys.path_hooks)
        self.importer_cache = dict(sys.path_importer_cache)
        self.locale = _locale.setlocale(locale.LC_ALL, None)
        self.locale_calls = _LOCALE_CALLS
        self.locale_calls.wrap(locale, "setlocale")
        for module, name in _SETTERS:
            _SETTINGS_CALLS.wrap(module, name)
        self.tz = (time.timezone, time.altzone, time.daylight, time.tzname)
        self.decimal_context: Any = None
        if "decimal" in sys.modules:
            self._capture_decimal()
        self.gc = gc.isenabled(), gc.get_threshold(), gc.get_debug(), list(gc.callbacks)
        self.tempfile = tempfile.tempdir, tempfile.template
        self.loggers = _Loggers()
        self.logger_dict = self.loggers.manager.loggerDict
        self.niceness = _nice(0)
        self.rlimits = {r: resource.getrlimit(r) for r in _RLIMITS}
        self.calls = _LIMIT_CALLS
        for module, name in ((resource, "setrlimit"), (resource, "prlimit"), (os, "nice"),
                             (os, "setpriority")):
            self.calls.wrap(module, name)
        self.saved = self._saved_reading()

    def reading(self) -> tuple[Any, ...]:
        """Everything cheap to read, in one tuple: when it equals the capture's (nearly
        always), one comparison replaces twenty. Module and object attributes are read from
        their namespaces by itemgetter, in C; lists and dicts are the live ones (the saved
        reading holds copies)."""
        return (
            # Lengths only, for two dicts compared entry by entry otherwise: a finder a script
            # puts into the cache, or a logger it creates, adds an entry.
            len(sys.path_importer_cache), len(self.logger_dict),
            _gc_callbacks, _SYS_ITEMS(_SYS), _THREADING_ITEMS(_THREADING),
            _WARNINGS_ITEMS(_WARNINGS), _BUILTIN_ITEMS(_BUILTINS), len(_BUILTINS),
            _TEMPFILE_ITEMS(_TEMPFILE), self._decimal_reading(),
            _MANAGER_ITEMS(self.loggers.manager_vars), _LOGGING["_loggerClass"],
            list(map(_LOGGER_ITEMS, self.loggers.logger_vars)),
        )

    def _decimal_reading(self) -> tuple[Any, ...]:
        """Only once a script has imported decimal (a context is costly to read)."""
        module = _modules.get("decimal")
        if module is None or self.decimal_context is None:
            return () if module is None else (None,)
        ctx = module.getcontext()
        # Signal dicts (flags, traps) compare as two integers, in C.
        return ctx, _DECIMAL_ATTRS(ctx), _DEFAULT_ATTRS(module.DefaultContext)

    def _saved_reading(self) -> tuple[Any, ...]:
        """The reading now, with copies of what changes in place, so that a change shows."""
        now = list(self.reading())
        now[2] = list(_gc_callbacks)
        now[3] = (*now[3][:4], list(sys.meta_path), list(sys.path_hooks))
        now[5] = (list(warnings.filters), *now[5][1:])
        if len(now[9]) == 3:
            # A signal dict points into its context: the copies must stay alive with it.
            ctx, default = now[9][0], _modules["decimal"].DefaultContext
            self._decimal_copies = ctx.copy(), default.copy()
            now[9] = (ctx, _DECIMAL_ATTRS(self._decimal_copies[0]),
                      _DEFAULT_ATTRS(self._decimal_copies[1]))
        now[12] = [(*items[:4], list(items[4]), list(items[5])) for items in now[12]]
        return tuple(now)

    def restore(self) -> list[str]:
        """Put every setting back; what could not be put back, one phrase each."""
        if _SETTINGS_CALLS.seen or self.reading() != self.saved:
            self._reset()
            _SETTINGS_CALLS.seen = False  # after: putting a setting back calls its setter
            self.saved = self._saved_reading()
        if self.locale_calls.seen:
            self.locale_calls.seen = False
            if _locale.setlocale(locale.LC_ALL, None) != self.locale:
                _locale.setlocale(locale.LC_ALL, self.locale)
        if self.calls.seen:
            self.calls.seen = False
            return self._restore_limits()
        return []

    def _reset(self) -> None:
        if sys.getrecursionlimit() != self.recursion_limit:
            sys.setrecursionlimit(self.recursion_limit)
        if sys.getswitchinterval() != self.switch_interval:
            sys.setswitchinterval(self.switch_interval)
        if sys.get_int_max_str_digits() != self.int_max_str_digits:
            sys.set_int_max_str_digits(self.int_max_str_digits)
        sys.dont_write_bytecode = self.dont_write_bytecode
        if (sys.displayhook, sys.breakpointhook, sys.unraisablehook) != self.sys_hooks:
            for name, hook in zip(_SYS_HOOKS, self.sys_hooks):
                setattr(sys, name, hook)
        if (sys.gettrace(), sys.getprofile()) != self.trace:
            sys.settrace(self.trace[0])
            sys.setprofile(self.trace[1])
        if (threading._trace_hook, threading._profile_hook,  # type: ignore[attr-defined]
                threading.excepthook) != self.thread_hooks:
            (threading._trace_hook, threading._profile_hook,  # type: ignore[attr-defined]
             threading.excepthook) = self.thread_hooks
        if socket.getdefaulttimeout() != self.socket_timeout:
            socket.setdefaulttimeout(self.socket_timeout)
        self._restore_warnings()
        self._restore_imports()
        if (time.timezone, time.altzone, time.daylight, time.tzname) != self.tz:
            time.tzset()  # the worker's own environment is back: its TZ, or none
        self._restore_decimal()
        self._restore_gc()
        if (tempfile.tempdir, tempfile.template) != self.tempfile:
            tempfile.tempdir, tempfile.template = self.tempfile
        if self.loggers.changed():
            self.loggers.restore()

    def _restore_warnings(self) -> None:
        if warnings.filters is not self.warnings_filters or warnings.filters != self.warnings_saved:
            warnings.filters = self.warnings_filters
            warnings.filters[:] = self.warnings_saved  # type: ignore[index]  # a list at run time
            warnings._filters_mutated()  # type: ignore[attr-defined]  # drops the C-level cache
        if _WARNINGS_HOOKS(_WARNINGS) != self.warnings_hooks:
            _WARNINGS.update(zip(("showwarning", "formatwarning", "defaultaction"), self.warnings_hooks))

    def _restore_imports(self) -> None:
        if builtins.__dict__ != self.builtins:
            _restore_dict(builtins.__dict__, self.builtins)
        if sys.meta_path is not self.meta_path or sys.meta_path != self.meta_path_saved:
            sys.meta_path = self.meta_path
            sys.meta_path[:] = self.meta_path_saved
        if sys.path_hooks is not self.path_hooks or sys.path_hooks != self.path_hooks_saved:
            sys.path_hooks = self.path_hooks
            sys.path_hooks[:] = self.path_hooks_saved
        cache = sys.path_importer_cache
        if cache != self.importer_cache:
            # New directories get finders as imports go (every script's own directory): those
            # made by the worker's own path hooks are kept, and become part of the snapshot.
            for key, finder in list(cache.items()):
                known = self.importer_cache.get(key, _MISSING)
                if known is _MISSING and _plain_finder(finder):
                    self.importer_cache[key] = finder
                elif finder is not known:
                    del cache[key]
            for key, finder in self.importer_cache.items():
                if key not in cache:
                    cache[key] = finder

    def _capture_decimal(self) -> None:
        decimal = sys.modules["decimal"]
        self.decimal_context = decimal.getcontext()
        self.decimal = _decimal_settings(self.decimal_context)
        self.decimal_default = _decimal_settings(decimal.DefaultContext)

    def _restore_decimal(self) -> None:
        decimal = sys.modules.get("decimal")
        if decimal is None:
            return
        if self.decimal_context is None:
            # First imported by the last request, which may have changed it since: back to
            # what a fresh import gives.
            _set_decimal(decimal.DefaultContext, _FRESH_DECIMAL)
            decimal.setcontext(decimal.Context())
            self._capture_decimal()
            return
        if decimal.getcontext() is not self.decimal_context:
            decimal.setcontext(self.decimal_context)
        if _decimal_settings(self.decimal_context) != self.decimal:
            _set_decimal(self.decimal_context, self.decimal)
        if _decimal_settings(decimal.DefaultContext) != self.decimal_default:
            _set_decimal(decimal.DefaultContext, self.decimal_default)

    def _restore_gc(self) -> None:
        enabled, threshold, debug, callbacks = self.gc
        if gc.isenabled() != enabled:
            (gc.enable if enabled else gc.disable)()
        if gc.get_threshold() != threshold:
            gc.set_threshold(*threshold)
        if gc.get_debug() != debug:
            gc.set_debug(debug)
        if gc.callbacks != callbacks:
            gc.callbacks[:] = callbacks

    def _restore_limits(self) -> list[str]:
        lost = []
        for r, (soft, hard) in self.rlimits.items():
            now = resource.getrlimit(r)
            if now == (soft, hard):
                continue
            try:
                _setrlimit(r, (soft, hard))
            except (ValueError, OSError):
                lost.append(f"lowered the hard limit {_RLIMIT_NAMES[r]} to {now[1]}, which cannot "
                            "be raised again: this worker will be replaced after the response")
        niceness = _nice(0)
        if niceness != self.niceness:
            lost.append(f"raised the niceness to {niceness}, which cannot be lowered again: "
                        "this worker will be replaced after the response")
        return lost


_MISSING = object()
# decimal.DefaultContext as a fresh `import decimal` makes it (names, not classes: decimal
# is imported only by scripts that use it).
_FRESH_DECIMAL = (28, "ROUND_HALF_EVEN", -999999, 999999, 1, 0,
                  ("InvalidOperation", "DivisionByZero", "Overflow"), ())
# The functions themselves, not the noting wrappers that replace them at capture.
_nice: Callable[[int], int] = getattr(os.nice, "_cgirt_original", os.nice)
_setrlimit: Callable[..., None] = getattr(resource.setrlimit, "_cgirt_original", resource.setrlimit)


def _plain_finder(finder: Any) -> bool:
    """A finder the worker's own path hooks make: a FileFinder with the standard loaders
    (or the site's, a subclass), or None. A lazy loader's (demandimport) is not."""
    if finder is None:
        return True
    if type(finder) is not machinery.FileFinder and not getattr(type(finder), "_cgirt_site_finder", False):
        return False
    loaders = getattr(finder, "_loaders", None)
    return isinstance(loaders, list) and bool(loaders) and all(
        isinstance(loader, type) and issubclass(loader, _STANDARD_LOADERS) for _, loader in loaders)


_STANDARD_LOADERS = (machinery.SourceFileLoader, machinery.SourcelessFileLoader,
                     machinery.ExtensionFileLoader)


def _restore_dict(d: dict[str, Any], saved: dict[str, Any]) -> None:
    for key in [k for k in d if k not in saved]:
        del d[key]
    for key, value in saved.items():
        if d.get(key, _MISSING) is not value:
            d[key] = value


def _set_decimal(ctx: Any, settings: tuple[Any, ...]) -> None:
    *fields, traps, flags = settings
    for name, value in zip(_DECIMAL_FIELDS, fields):
        setattr(ctx, name, value)
    for signal in ctx.traps:
        ctx.traps[signal] = signal.__name__ in traps
    for signal in ctx.flags:
        ctx.flags[signal] = signal.__name__ in flags


def wrapped(function: Callable[..., Any]) -> Callable[..., Any]:
    """The function a noting wrapper stands for (for tests)."""
    return getattr(function, "_cgirt_original", function)
