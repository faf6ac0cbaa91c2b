#!/usr/bin/env python3
"""What Mercurial's hgweb.cgi does to the interpreter: demandimport, lazy imports for every
module imported afterwards (builtins.__import__ replaced, and a lazy loader's path hook)."""
import builtins
import importlib.machinery
import importlib.util
import sys

real_import = builtins.__import__


class Deferred:
    def __init__(self, args):
        self._args = args
        self._module = None

    def __getattr__(self, name):
        if self._module is None:
            self._module = real_import(*self._args)
        return getattr(self._module, name)


def demandimport(name, globals=None, locals=None, fromlist=(), level=0):
    if fromlist or level:
        return real_import(name, globals, locals, fromlist, level)
    return Deferred((name, globals, locals, fromlist, level))


builtins.__import__ = demandimport
lazy = importlib.util.LazyLoader.factory(importlib.machinery.SourceFileLoader)
sys.path_hooks.insert(0, importlib.machinery.FileFinder.path_hook(
    (lazy, importlib.machinery.SOURCE_SUFFIXES)))
sys.path_importer_cache.clear()
print("Content-Type: text/plain")
print()
print("imports are lazy now")
