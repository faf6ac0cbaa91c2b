"""Where the runner's instructions per request go: the same requests with duties switched off.

    python -m bench.ablation [--script hello|form] [--requests A B]

Each variant is `bench.hotpath` under callgrind, counted as `bench.instructions` counts (two
request counts, so start-up cancels out), in a fresh interpreter in which some of the
runner's per-request duties are replaced by nothing: the access log line, the status slot,
the publish generation check, the interpreter check, the library watch, the deadline timer,
the C environment. Each alone says what that duty costs; all of them together what is left
without any. Two more variants give the floor: `bench.pyfloor`'s exec inside cgirt's
FastCGI connection handling, and `bench.pyfloor`'s whole loop in place of cgirt (no sandbox,
no checks), both in the same harness with the same client.

A measuring tool only: the switches patch the runner's classes inside the measuring process,
and a request served with any of them off is not served as cgirt serves it.
"""

from __future__ import annotations

import argparse
import importlib
import shutil
import signal
import sys
import tempfile
import types
from pathlib import Path
from typing import Any, Callable

from . import pyfloor
from .instructions import callgrind_instructions, per_request, requests_run


def _nothing(*args: Any, **kwargs: Any) -> None:
    return None


def _none_changed(*args: Any) -> list[str]:
    return []


def _timer_off() -> Any:
    # The app module's own view of `signal` only: the worker still installs its handlers.
    return types.SimpleNamespace(**{**vars(signal), "setitimer": _nothing})


def _python_environment_only() -> Any:
    from cgirt.runner.sandbox import c_environment

    empty = c_environment({})
    encoding = sys.getfilesystemencoding()

    def encode(env: dict[str, str]) -> tuple[dict[bytes, bytes], Any]:
        return {k.encode(encoding, "surrogateescape"): v.encode(encoding, "surrogateescape")
                for k, v in env.items()}, empty

    return encode


def _run_with_status_line() -> Any:
    # hotpath checks that the first response is a 200; pyfloor's scripts send no Status.
    run = pyfloor.run
    return lambda codes, params: b"Status: 200 OK\r\n" + run(codes, params)


def _floor_exec_in_cgirt() -> Any:
    codes: dict[str, Any] = {}

    def call(self: Any, req: Any) -> None:
        req.write(pyfloor.run(codes, req.params))

    return call


def _floor() -> Any:
    codes: dict[str, Any] = {}
    return lambda self, conn, addr, control: pyfloor.answer(conn, codes)


# A switch: (module, "Class.attribute" or "attribute", what replaces it, made when applied).
Switch = tuple[str, str, Callable[[], Any]]
DUTIES: dict[str, list[Switch]] = {
    "access log": [("cgirt.runner.accesslog", "AccessLog.write", lambda: _nothing)],
    "status slot": [("cgirt.runner.scoreboard", "SlotWriter.request_started", lambda: _nothing),
                    ("cgirt.runner.scoreboard", "SlotWriter.request_finished", lambda: _nothing)],
    "generation check": [("cgirt.runner.app", "CgiApp._check_generation", lambda: _nothing)],
    "interpreter check": [("cgirt.runner.interpreter", "InterpreterState.restore",
                           lambda: _none_changed)],
    "library watch": [("cgirt.runner.libwatch", "LibraryWatch.watch_new", lambda: _nothing),
                      ("cgirt.runner.libwatch", "LibraryWatch.changes", lambda: _none_changed)],
    "deadline timer": [("cgirt.runner.app", "signal", _timer_off)],
    "C environment": [("cgirt.runner.sandbox", "encode_environment", _python_environment_only)],
}
ALL_DUTIES = "every duty above"
FLOOR_IN_CGIRT = "pyfloor's exec in cgirt's FastCGI layer"
FLOOR = "pyfloor in place of cgirt"
STATUS_LINE: Switch = ("bench.pyfloor", "run", _run_with_status_line)
FLOORS: dict[str, list[Switch]] = {
    FLOOR_IN_CGIRT: [STATUS_LINE, ("cgirt.runner.app", "CgiApp.__call__", _floor_exec_in_cgirt)],
    FLOOR: [STATUS_LINE, ("cgirt.fastcgi.server", "FastCGIServer.handle_connection", _floor)],
}
VARIANTS = ["cgirt", *(f"without {d}" for d in DUTIES), f"without {ALL_DUTIES}", *FLOORS]


def switches(variant: str) -> list[Switch]:
    if variant == "cgirt":
        return []
    if variant in FLOORS:
        return FLOORS[variant]
    duty = variant.removeprefix("without ")
    return [s for d in (DUTIES.values() if duty == ALL_DUTIES else [DUTIES[duty]]) for s in d]


def target(switch: Switch) -> tuple[Any, str]:
    """The object whose attribute a switch replaces, and the attribute's name; an error if
    the runner has no such attribute (renamed: the switch would switch nothing off)."""
    module, path, _ = switch
    owner: Any = importlib.import_module(module)
    *classes, name = path.split(".")
    for cls in classes:
        owner = getattr(owner, cls)
    if not hasattr(owner, name):
        raise AttributeError(f"bench.ablation: {module}.{path} is gone; update the switch")
    return owner, name


def switch_off(variant: str) -> None:
    """Apply `variant`'s switches in this process."""
    for switch in switches(variant):
        owner, name = target(switch)
        setattr(owner, name, switch[2]())


def run_variant(argv: list[str]) -> int:
    """Inside callgrind: `--run VARIANT --script S --requests N`."""
    ap = argparse.ArgumentParser(prog="python -m bench.ablation --run")
    ap.add_argument("--run", choices=VARIANTS, required=True)
    ap.add_argument("--script", choices=("hello", "form"), default="hello")
    ap.add_argument("--requests", type=int, default=100)
    args = ap.parse_args(argv)
    switch_off(args.run)
    from . import hotpath

    sys.argv = ["bench.hotpath", "--script", args.script, "--requests", str(args.requests)]
    return hotpath.main()


def main() -> int:
    if "--run" in sys.argv:
        return run_variant(sys.argv[1:])
    ap = argparse.ArgumentParser(prog="python -m bench.ablation")
    ap.add_argument("--script", choices=("hello", "form"), default="hello")
    ap.add_argument("--requests", type=int, nargs=2, default=(100, 600), metavar=("A", "B"))
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        print("bench.ablation: valgrind is not installed (apt-get install valgrind)", file=sys.stderr)
        return 2
    low, high = sorted(args.requests)
    if requests_run(high) <= requests_run(low):
        print("bench.ablation: the two request counts must differ by 5 or more", file=sys.stderr)
        return 2
    full = 0.0
    print(f"{args.script}: instructions per request (callgrind, {low} and {high} requests)")
    with tempfile.TemporaryDirectory(prefix="cgirt-ablation-") as tmp:
        for variant in VARIANTS:
            module = ["-m", "bench.ablation", "--run", variant, "--script", args.script]
            counts = [(n, callgrind_instructions(module, n, Path(tmp) / f"{n}.out")) for n in (low, high)]
            each = per_request(*counts)
            full = full or each
            print(f"  {variant:<40} {each:>10,.0f}  {each - full:>+10,.0f}  {each / full:6.1%}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
