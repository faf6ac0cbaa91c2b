"""Interpreter-wide settings a script may change, captured at worker start, put back after
every request: what a fresh CGI process would have started with.

Each item is read cheaply after every request and reset only when it differs: a script
that touches nothing (most of them) costs a few dozen attribute reads and one system call.
Two settings cannot always be put back: a niceness raised (going down again needs
privilege) and a hard resource limit lowered. Those are reported, and the worker is
replaced after the response.

Resource limits, the niceness and the locale cost a system call or more each to read, so
they are read only after a request that called one of the functions that change them
(`resource.setrlimit`, `resource.prlimit`, `os.nice`, `os.setpriority`, `locale.setlocale`,
wrapped here at capture to note the call; `_locale.setlocale` or C code calling setlocale(3)
directly go unnoticed).
"""

from __future__ import annotations

import builtins
import decimal
import _locale
import gc
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
from typing import Any, Callable

_RLIMITS = tuple(sorted({getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_")}))
_RLIMIT_NAMES = {getattr(resource, n): n for n in dir(resource) if n.startswith("RLIMIT_")}
# What a fresh `import decimal` gives (decimal.DefaultContext may itself have been changed).
_DECIMAL_FIELDS = ("prec", "rounding", "Emin", "Emax", "capitals", "clamp")
_SYS_HOOKS = ("displayhook", "breakpointhook", "unraisablehook")
# Where InterpreterState.reading() puts what changes in place.
_IMPORTER_CACHE, _FLAGS, _TRAPS, _DEFAULT_TRAPS = 21, 33, 34, 39


def _decimal_settings(ctx: decimal.Context) -> tuple[Any, ...]:
    return (*(getattr(ctx, f) for f in _DECIMAL_FIELDS),
            tuple(s for s, on in ctx.traps.items() if on),
            tuple(s for s, on in ctx.flags.items() if on))


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
        self.warnings_hooks = (warnings.showwarning, warnings.formatwarning, warnings.defaultaction)
        self.import_hook = builtins.__import__
        self.builtins = dict(builtins.__dict__)
        self.builtins_written = _watch_builtins()
        self.meta_path, self.meta_path_saved = sys.meta_path, list(sys.meta_path)
        self.path_hooks, self.path_hooks_saved = sys.path_hooks, list(sys.path_hooks)
        self.importer_cache = dict(sys.path_importer_cache)
        self.finder_types = {type(f) for f in sys.path_importer_cache.values()}
        self.locale = _locale.setlocale(locale.LC_ALL, None)
        self.locale_calls = _LOCALE_CALLS
        self.locale_calls.wrap(locale, "setlocale")
        self.tz = (time.timezone, time.altzone, time.daylight, time.tzname)
        self.decimal_context = decimal.getcontext()
        self.decimal = _decimal_settings(self.decimal_context)
        self.decimal_default = _decimal_settings(decimal.DefaultContext)
        self.gc = gc.isenabled(), gc.get_threshold(), gc.get_debug(), list(gc.callbacks)
        self.tempfile = tempfile.tempdir, tempfile.template
        self.loggers = _Loggers()
        self.niceness = _nice(0)
        self.rlimits = {r: resource.getrlimit(r) for r in _RLIMITS}
        self.calls = _LIMIT_CALLS
        for module, name in ((resource, "setrlimit"), (resource, "prlimit"), (os, "nice"),
                             (os, "setpriority")):
            self.calls.wrap(module, name)
        self.saved = self._saved_reading()

    def reading(self) -> tuple[Any, ...]:
        """Everything cheap to read, in one tuple: when it equals the capture's (nearly
        always), one comparison replaces twenty."""
        ctx = decimal.getcontext()
        default = decimal.DefaultContext
        manager = self.loggers.manager
        return (
            sys.getrecursionlimit(), sys.getswitchinterval(), sys.get_int_max_str_digits(),
            sys.dont_write_bytecode, sys.displayhook, sys.breakpointhook, sys.unraisablehook,
            sys.gettrace(), sys.getprofile(),
            threading._trace_hook, threading._profile_hook, threading.excepthook,  # type: ignore[attr-defined]
            socket.getdefaulttimeout(),
            tuple(warnings.filters), warnings.showwarning, warnings.formatwarning,
            warnings.defaultaction,
            builtins.__import__, len(builtins.__dict__), tuple(sys.meta_path),
            tuple(sys.path_hooks), sys.path_importer_cache,
            time.timezone, time.altzone, time.daylight, time.tzname,
            # Signal dicts compare as two integers (their flags), in C.
            ctx, ctx.prec, ctx.rounding, ctx.Emin, ctx.Emax, ctx.capitals, ctx.clamp, ctx.flags,
            ctx.traps, default.prec, default.rounding, default.Emin, default.Emax, default.traps,
            gc.isenabled(), gc.get_threshold(), gc.get_debug(), tuple(gc.callbacks),
            tempfile.tempdir, tempfile.template,
            manager.disable, len(manager.loggerDict), logging.getLoggerClass(),
            [(lg.level, lg.disabled, lg.propagate, lg.parent, tuple(lg.handlers), tuple(lg.filters))
             for lg in self.loggers.loggers],
        )

    def _saved_reading(self) -> tuple[Any, ...]:
        now = list(self.reading())
        # Copies of what changes in place, so that a change shows as a difference.
        now[_IMPORTER_CACHE] = dict(sys.path_importer_cache)
        # A signal dict points into its context: the copies must stay alive with it.
        self._decimal_copies = decimal.getcontext().copy(), decimal.DefaultContext.copy()
        now[_FLAGS:_TRAPS + 1] = self._decimal_copies[0].flags, self._decimal_copies[0].traps
        now[_DEFAULT_TRAPS] = self._decimal_copies[1].traps
        return tuple(now)

    def restore(self) -> list[str]:
        """Put every setting back; what could not be put back, one phrase each."""
        if self.builtins_written[0] or self.reading() != self.saved:
            self._reset()
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
            warnings.filters[:] = self.warnings_saved
            warnings._filters_mutated()  # type: ignore[attr-defined]  # drops the C-level cache
        if (warnings.showwarning, warnings.formatwarning, warnings.defaultaction) != self.warnings_hooks:
            warnings.showwarning, warnings.formatwarning, warnings.defaultaction = self.warnings_hooks

    def _restore_imports(self) -> None:
        if (builtins.__import__ is not self.import_hook or self.builtins_written[0]
                or len(builtins.__dict__) != len(self.builtins)):
            self.builtins_written[0] = False
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
                if known is _MISSING and type(finder) in self.finder_types:
                    self.importer_cache[key] = finder
                elif finder is not known:
                    del cache[key]
            for key, finder in self.importer_cache.items():
                if key not in cache:
                    cache[key] = finder

    def _restore_decimal(self) -> None:
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
# The functions themselves, not the noting wrappers that replace them at capture.
_nice: Callable[[int], int] = getattr(os.nice, "_cgirt_original", os.nice)
_setrlimit: Callable[..., None] = getattr(resource.setrlimit, "_cgirt_original", resource.setrlimit)


def _restore_dict(d: dict[str, Any], saved: dict[str, Any]) -> None:
    for key in [k for k in d if k not in saved]:
        del d[key]
    for key, value in saved.items():
        if d.get(key, _MISSING) is not value:
            d[key] = value


def _watch_builtins() -> list[bool]:
    """A flag set by every attribute write to the builtins module (`builtins.open = ...`):
    comparing its whole namespace after each request would cost more than the rest."""
    written = [False]
    cls = type(builtins)
    if getattr(cls, "_cgirt_written", None) is not None:
        return cls._cgirt_written  # type: ignore[no-any-return]  # captured before

    class Builtins(cls):  # type: ignore[valid-type,misc]
        _cgirt_written = written

        def __setattr__(self, name: str, value: Any) -> None:
            written[0] = True
            super().__setattr__(name, value)

        def __delattr__(self, name: str) -> None:
            written[0] = True
            super().__delattr__(name)

    builtins.__class__ = Builtins
    return written


def _set_decimal(ctx: decimal.Context, settings: tuple[Any, ...]) -> None:
    *fields, traps, flags = settings
    for name, value in zip(_DECIMAL_FIELDS, fields):
        setattr(ctx, name, value)
    for signal in ctx.traps:
        ctx.traps[signal] = signal in traps
    for signal in ctx.flags:
        ctx.flags[signal] = signal in flags


def wrapped(function: Callable[..., Any]) -> Callable[..., Any]:
    """The function a noting wrapper stands for (for tests)."""
    return getattr(function, "_cgirt_original", function)
