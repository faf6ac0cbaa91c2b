"""The least a fork-mode request can cost on this machine: a bare fork and exit.

Run as `python -m bench.forkfloor [N]` in a fresh interpreter that holds what a fork-mode
template holds (cgirt's runner and the default preload list), frozen as the template does;
prints the CPU microseconds (parent and child, user and system) of one `os.fork()` whose
child exits at once. No request can be served in fork mode for less: that bounds fork
mode's ratio to classic CGI on the machine that runs it.
"""

from __future__ import annotations

import gc
import os
import resource
import sys


def measure(n: int) -> float:
    import importlib

    import cgirt.runner.app  # noqa: F401 - what the template holds: the runner and its preloads
    from cgirt.config import DEFAULT_PRELOAD

    for name in DEFAULT_PRELOAD:
        importlib.import_module(name)
    gc.freeze()

    def cpu() -> float:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    before = cpu()
    for _ in range(n):
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
    return (cpu() - before) / n * 1e6


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # `import cgi` on 3.11-3.12
    print(f"{measure(int(sys.argv[1]) if len(sys.argv) > 1 else 300):.0f}")
