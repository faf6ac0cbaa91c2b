#!/usr/bin/env python3
"""Prints the interpreter-wide settings change_interpreter.py changes: what a fresh CGI
process would show, every time."""
import builtins
import decimal
import gc
import json
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

manager = logging.Logger.manager
loggers = [logging.root] + [manager.loggerDict[n] for n in sorted(manager.loggerDict)
                            if isinstance(manager.loggerDict[n], logging.Logger)]
state = {
    "recursion_limit": sys.getrecursionlimit(),
    "socket_timeout": socket.getdefaulttimeout(),
    "warnings_filters": [(f[0], str(f[1]), f[2].__name__, str(f[3]), f[4]) for f in warnings.filters],
    "showwarning": warnings.showwarning.__qualname__,
    "import": repr(builtins.__import__),
    "builtins_underscore": hasattr(builtins, "_"),
    "builtins_open": repr(builtins.open),
    "meta_path": [type(f).__name__ for f in sys.meta_path],
    "path_hooks": [getattr(h, "__qualname__", type(h).__name__) for h in sys.path_hooks],
    "injected_finder": "/cgirt-injected" in sys.path_importer_cache,
    "finder_types": sorted({type(f).__name__ for f in sys.path_importer_cache.values()}),
    "loggers": [(lg.name, lg.level, lg.disabled, lg.propagate,
                 [type(h).__name__ for h in lg.handlers]) for lg in loggers],
    "logging_disable": manager.disable,
    "locale": locale.setlocale(locale.LC_ALL),
    "tz": (time.tzname, time.timezone, os.environ.get("TZ")),
    "decimal": repr(decimal.getcontext()),
    "decimal_default": repr(decimal.DefaultContext),
    "trace": (sys.gettrace(), sys.getprofile(), threading._trace_hook),
    "int_max_str_digits": sys.get_int_max_str_digits(),
    "gc": (gc.isenabled(), gc.get_threshold(), len(gc.callbacks)),
    "tempdir": tempfile.tempdir,
    "displayhook": repr(sys.displayhook),
    "unraisablehook": repr(sys.unraisablehook),
    "niceness": os.nice(0),
    "rlimits": {n: resource.getrlimit(getattr(resource, n)) for n in sorted(dir(resource))
                if n.startswith("RLIMIT_")},
    "json_leftover": hasattr(json, "cgirt_leftover"),
    "threads": threading.active_count(),
}
print("Content-Type: text/plain")
print()
print(f"pid={os.getpid()}")
for key, value in state.items():
    print(f"{key}={value!r}")
