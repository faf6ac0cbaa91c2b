#!/usr/bin/env python3
"""Changes every interpreter-wide setting a CGI script can reach; none of it may reach the
next request (probe_interpreter.py prints them). `?lasting` also makes changes that cannot be
undone in the worker (a library module's attribute, a higher niceness, a lowered hard limit),
which must get the worker replaced."""
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
import sys
import tempfile
import threading
import time
import warnings

real_import = builtins.__import__


class Finder:
    def find_spec(self, *args, **kwargs):
        return None


sys.setrecursionlimit(4321)
socket.setdefaulttimeout(3.5)
warnings.simplefilter("error")
warnings.filterwarnings("ignore", message="leaked filter")
warnings.showwarning = lambda *a, **k: None
builtins.__import__ = lambda *a, **k: real_import(*a, **k)  # as demandimport does
builtins._ = lambda text: text  # as gettext.install() does
builtins.open = open
sys.meta_path.insert(0, Finder())
sys.path_hooks.insert(0, importlib.machinery.FileFinder.path_hook())
sys.path_importer_cache["/cgirt-injected"] = Finder()
logging.getLogger().setLevel(logging.DEBUG)
logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))
logging.getLogger("cgirt.error").addHandler(logging.NullHandler())
logging.getLogger("cgirt.error").propagate = False
logging.getLogger("cgirt.access").disabled = True
logging.getLogger("leaky.new.logger").addHandler(logging.NullHandler())
logging.disable(logging.INFO)
locale.setlocale(locale.LC_ALL, "C")
os.environ["TZ"] = "JST-9"
time.tzset()
decimal.getcontext().prec = 5
decimal.getcontext().traps[decimal.Inexact] = False
decimal.Decimal(1) / decimal.Decimal(3)  # sets flags
decimal.DefaultContext.prec = 7
sys.settrace(lambda *a: None)
sys.setprofile(lambda *a: None)
threading.settrace(lambda *a: None)
sys.set_int_max_str_digits(640)
gc.disable()
gc.set_threshold(5000, 20, 20)
gc.callbacks.append(lambda *a: None)
tempfile.tempdir = "/nonexistent-tmp"
sys.displayhook = lambda value: None
sys.unraisablehook = lambda u: None
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (soft // 2, hard))
if sys.argv[1:] == ["lasting"]:
    json.cgirt_leftover = "from another request"
    os.nice(1)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2 ** 40, 2 ** 40))

sys.settrace(None)  # the trace and profile functions would otherwise slow our own printing
sys.setprofile(None)
sys.settrace(lambda *a: None)
sys.setprofile(lambda *a: None)
sys.stdout.write(f"Content-Type: text/plain\n\nchanged in {os.getpid()}\n")
