"""A prefork supervisor: bind once, fork N workers, watch them, replace them, stop them.

It knows nothing of CGI or FastCGI. It is given an already-bound listening socket, a
`child_init` run once in each new worker, and a `handle(conn, addr, control)` run for each
accepted connection. Workers tell the master when a request starts and ends through their
slot of a shared-memory scoreboard (scoreboard.py), so the master can enforce a deadline that
no script can catch (SIGKILL), the way gunicorn's arbiter murders workers whose heartbeat went
stale, and can tell an observer (the status server) what every worker is doing.

Signals in the master are only recorded (queued and a byte written to a wake-up pipe); the
main loop acts on them in `step()`: HUP replaces the workers, TERM stops gracefully, INT and
QUIT at once, USR1 calls `on_reopen` (the logs), TTIN and TTOU add or retire a worker. Any
other signal whose default would end the process is logged and ignored (a stray USR2 must
not kill the master and leave its socket behind), except the faults (SEGV, BUS, FPE, ILL,
TRAP, ABRT, SYS): those report a real fault, and ignoring one would turn a crash into a hang.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import random
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from typing import Callable, NoReturn, Protocol

from ..errors import ExitStatus

from .scoreboard import Scoreboard, SlotWriter

log = logging.getLogger("cgirt.error")

EXIT_OK = ExitStatus.OK
WORKER_BOOT_ERROR = ExitStatus.BOOT_FAILED
"""Exit status of a worker whose child_init failed, and then of the master, which halts."""

_FAULTS = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGTRAP,
           signal.SIGABRT, signal.SIGSYS}
_LEFT_AS_THEY_ARE = {signal.SIGKILL, signal.SIGSTOP, signal.SIGTSTP, signal.SIGCONT,
                     signal.SIGWINCH, signal.SIGURG, signal.SIGPIPE, signal.SIGCHLD}
_ACTED_ON = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD,
             signal.SIGUSR1, signal.SIGTTIN, signal.SIGTTOU)
HARMLESS_SIGNALS = tuple(sorted(
    set(signal.valid_signals()) - _FAULTS - _LEFT_AS_THEY_ARE - set(_ACTED_ON)))
"""Signals that end a process by default and mean nothing to cgirt: ignored (and logged)."""

_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class SupervisorSettings:
    workers: int = 2
    request_kill_after: float = 31.0  # a request older than this gets its worker SIGKILLed
    max_requests: int = 0
    max_requests_jitter: int = 0
    graceful_timeout: float = 30.0
    quick_timeout: float = 1.0  # SIGINT/SIGQUIT: in-flight requests get this long
    tick: float = 0.1
    boot_failures_to_halt: int = 3
    slow_after: float = 0.0  # a request older than this gets `slow_signal` once (0: never)
    slow_signal: int = signal.SIGUSR2


class Observer(Protocol):
    """Something the master also attends to in its loop (the status server): its own
    descriptors, a look at the pool every turn; workers close what it holds."""

    def fds(self) -> list[int]: ...

    def on_readable(self, fd: int) -> None: ...

    def on_tick(self, now: float) -> None: ...

    def close_in_worker(self) -> None: ...


class WorkerControl:
    """The worker side: lives in the child, writes only its own slot."""

    def __init__(self, slots: Scoreboard, index: int, max_requests: int, wake_w: int) -> None:
        self._slot: SlotWriter = slots.writer(index)
        self._max_requests = max_requests
        self._served = 0
        self._stopping = False
        self._recycle = False
        self._wake_w = wake_w
        self.listener_fd = -1  # set by the accept loop

    def booted(self) -> None:
        self._slot.booted()

    def request_started(self, method: str = "", uri: str = "", script: str = "") -> None:
        self._slot.request_started(method, uri, script)

    def request_finished(self) -> None:
        self._slot.request_finished()
        self._served += 1
        if self._max_requests and self._served >= self._max_requests:
            self._stopping = True

    def recycle_after_request(self) -> None:
        self._recycle = True
        self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        self._stopping = True
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass


Handler = Callable[[socket.socket, object, WorkerControl], None]


@dataclass
class _Worker:
    pid: int
    slot: int
    retiring_since: float | None = None  # set when we asked it to stop
    booted: bool = False
    spawned: float = field(default_factory=time.time)
    slow_flagged: float = 0.0  # the start of the request it was last sent slow_signal for


@dataclass
class Supervisor:
    listener: socket.socket
    handle: Handler
    settings: SupervisorSettings
    child_init: Callable[[], None] = lambda: None
    on_ready: Callable[[], None] = lambda: None
    observer: Observer | None = None
    on_reopen: Callable[[], None] = lambda: None  # SIGUSR1, in the master's loop
    on_tick: Callable[[float], None] = lambda now: None  # every turn of the master's loop
    wake_fds: tuple[int, ...] = ()  # a byte on one of these wakes the master for a turn
    workers: dict[int, _Worker] = field(default_factory=dict)
    exit_status: int = EXIT_OK
    halt_reason: str = ""
    # Starts a worker for a slot and returns its pid; None forks a real one. Tests give
    # stand-in children here, to drive `step()` with injected time.
    spawn: Callable[[int], int] | None = None

    def __post_init__(self) -> None:
        self.target = self.settings.workers  # moved by SIGTTIN and SIGTTOU
        self.max_workers = max(4 * self.settings.workers, self.settings.workers + 8)
        # Twice the slots: during a graceful reload old and new workers run side by side.
        self._slots = Scoreboard(self.max_workers * 2)
        self.started_at = time.time()
        self.retired_requests = 0  # requests started by workers that are gone
        self.slow_requests = 0
        self._signals: list[int] = []
        self._running = True
        self._stop_deadline: float | None = None
        self._boot_failures = 0
        self._wake_r = self._wake_w = -1

    @property
    def scoreboard(self) -> Scoreboard:
        return self._slots

    # -- master -----------------------------------------------------------------------

    def run(self) -> int:
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        old_wakeup = signal.set_wakeup_fd(self._wake_w)
        previous = {s: signal.signal(s, self._record_signal) for s in _ACTED_ON + HARMLESS_SIGNALS}
        try:
            self.on_ready()
            while self._running:
                self.step(time.monotonic())
                self._sleep()
        finally:
            self._kill_all(signal.SIGKILL)
            self._reap()
            for s, h in previous.items():
                signal.signal(s, h)
            signal.set_wakeup_fd(old_wakeup)
            os.close(self._wake_r)
            os.close(self._wake_w)
        return self.exit_status

    def _record_signal(self, signum: int, frame: object) -> None:
        self.queue_signal(signum)

    def queue_signal(self, signum: int) -> None:
        """What a signal to the master does: recorded, acted on by the next `step()`."""
        self._signals.append(signum)

    @property
    def running(self) -> bool:
        return self._running

    def _sleep(self) -> None:
        try:
            fds = [self._wake_r, *self.wake_fds, *(self.observer.fds() if self.observer else ())]
            ready, _, _ = select.select(fds, [], [], self.settings.tick)
        except InterruptedError:
            ready = []
        for fd in ready:
            if fd != self._wake_r and fd not in self.wake_fds and self.observer:
                self.observer.on_readable(fd)
        for fd in (self._wake_r, *self.wake_fds):
            try:
                while os.read(fd, 4096):
                    pass
            except BlockingIOError:
                pass

    def step(self, now: float) -> None:
        """One turn of the master loop: signals, reaping, deadlines, spawning."""
        while self._signals:
            self._on_signal(self._signals.pop(0), now)
        self._reap()
        if not self._running:
            return
        try:
            self.on_tick(now)
        except OSError as exc:  # e.g. a log that cannot be rotated: say so, keep serving
            log.error("cgirt: %s", exc)
        self._enforce_deadlines(now)
        if self.observer:
            self.observer.on_tick(now)
        if self._stop_deadline is not None:
            if not self.workers:
                self._running = False
            return
        while self._boot_failures < self.settings.boot_failures_to_halt and (
            sum(1 for w in self.workers.values() if w.retiring_since is None)
            < self.target
        ):
            self._spawn()

    def _on_signal(self, signum: int, now: float) -> None:
        if signum == signal.SIGHUP and self._stop_deadline is None:
            log.info("SIGHUP: replacing all workers")
            for w in self.workers.values():
                if w.retiring_since is None:
                    self._retire(w, now)
        elif signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            graceful = signum == signal.SIGTERM
            bound = self.settings.graceful_timeout if graceful else self.settings.quick_timeout
            deadline = now + bound
            if self._stop_deadline is None or deadline < self._stop_deadline:
                self._stop_deadline = deadline
            for w in self.workers.values():
                self._retire(w, now, force=True)
        elif signum == signal.SIGUSR1:
            try:
                self.on_reopen()
                log.info("SIGUSR1: log files reopened")
            except OSError as exc:
                log.error("cgirt: reopening the logs: %s", exc)
        elif signum in (signal.SIGTTIN, signal.SIGTTOU) and self._stop_deadline is None:
            self._resize(1 if signum == signal.SIGTTIN else -1, now)
        elif signum in HARMLESS_SIGNALS:
            log.info("signal %s ignored", _signal_name(signum))

    def _resize(self, by: int, now: float) -> None:
        wanted = self.target + by
        if not 1 <= wanted <= self.max_workers:
            log.warning("workers stay at %d (between 1 and %d)", self.target, self.max_workers)
            return
        self.target = wanted
        log.info("%s: %d workers", "SIGTTIN" if by > 0 else "SIGTTOU", wanted)
        if by < 0:
            serving = [w for w in self.workers.values() if w.retiring_since is None]
            if len(serving) > wanted:
                self._retire(max(serving, key=lambda w: w.pid), now)

    def _retire(self, w: _Worker, now: float, force: bool = False) -> None:
        if w.retiring_since is None or force:
            w.retiring_since = w.retiring_since or now
            self._kill(w.pid, signal.SIGTERM)

    def _enforce_deadlines(self, now: float) -> None:
        for w in list(self.workers.values()):
            started, _ = self._slots.get(w.slot)
            if started and now - started > self.settings.request_kill_after:
                log.error("worker %d: request exceeded its deadline; killing it", w.pid)
                self._kill(w.pid, signal.SIGKILL)
            elif (started and self.settings.slow_after and w.slow_flagged != started
                    and now - started > self.settings.slow_after):
                w.slow_flagged = started  # once per request
                self.slow_requests += 1
                self._kill(w.pid, self.settings.slow_signal)
            elif w.retiring_since is not None:
                bound = self.settings.graceful_timeout
                if self._stop_deadline is not None:
                    bound = self._stop_deadline - w.retiring_since
                if now - w.retiring_since > bound:
                    self._kill(w.pid, signal.SIGKILL)
        if self._stop_deadline is not None and now > self._stop_deadline:
            self._kill_all(signal.SIGKILL)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            w = self.workers.pop(pid, None)
            if w is None:
                continue
            booted = w.booted or self._slots.get(w.slot)[1] == 1
            self.retired_requests += self._slots.read(w.slot).requests
            self._slots.set(w.slot, 0.0, 0)
            self._on_exit(w, status, booted)

    def _on_exit(self, w: _Worker, status: int, booted: bool) -> None:
        code = os.waitstatus_to_exitcode(status)
        # Only a worker that never finished booting counts: a script may end a booted
        # worker with os._exit(3), and that must not halt every site's runner.
        if not booted and (code == WORKER_BOOT_ERROR or w.retiring_since is None):
            self._boot_failures += 1
            log.error("worker %d failed to boot (exit %d)", w.pid, code)
            if code == WORKER_BOOT_ERROR or self._boot_failures >= self.settings.boot_failures_to_halt:
                self.halt_reason = "workers fail at boot; see the error log"
                self.exit_status = WORKER_BOOT_ERROR
                self._running = False
            return
        self._boot_failures = 0
        if code < 0 and w.retiring_since is None:
            # SIGKILL suggests a deadline kill or the OOM killer; either way, replace it.
            log.error("worker %d died from signal %d", w.pid, -code)

    def _spawn(self) -> None:
        used = {w.slot for w in self.workers.values()}
        slot = next(i for i in range(self._slots.size) if i not in used)
        self._slots.set(slot, 0.0, 0)
        if self.spawn is not None:
            pid = self.spawn(slot)
        else:
            master = os.getpid()
            pid = os.fork()
            if pid == 0:
                self._child(slot, master)  # never returns
        self.workers[pid] = _Worker(pid=pid, slot=slot)

    def _kill(self, pid: int, sig: int) -> None:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

    def _kill_all(self, sig: int) -> None:
        for pid in list(self.workers):
            self._kill(pid, sig)

    # -- worker -----------------------------------------------------------------------

    def run_worker(self, slots: Scoreboard, slot: int, parent: int) -> NoReturn:
        """Be one worker of another master, in this process (forked for it): `slot` of the
        shared `slots` that `parent` watches (its deadlines and recycling), this
        supervisor's `child_init`, `handle` and settings. Exits with the worker's status."""
        self._slots = slots  # the parent's: this supervisor's own master never ran
        self._child(slot, parent)

    def _child(self, slot: int, master: int) -> NoReturn:
        code = 1
        try:
            try:
                code = self._worker_main(slot, master)
            except BaseException:  # noqa: B036 - a worker must never return into the master's loop
                try:
                    log.exception("worker crashed")
                except BaseException:  # noqa: B036 - even logging may fail (out of memory)
                    pass
            try:
                logging.shutdown()
            except BaseException:  # noqa: B036
                pass
        finally:
            os._exit(code)

    def _worker_main(self, slot: int, master: int) -> int:
        die_with_parent()
        if os.getppid() != master:
            return EXIT_OK  # the master died before the kernel could be asked to tell us
        if self._wake_r >= 0:  # not for `run_worker`: no master loop ran here
            os.close(self._wake_r)
            os.close(self._wake_w)
        if self.observer:
            self.observer.close_in_worker()  # a script must not reach the admin's socket
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)
        random.seed()
        jitter = random.randint(0, self.settings.max_requests_jitter)
        max_requests = self.settings.max_requests + jitter if self.settings.max_requests else 0
        control = WorkerControl(self._slots, slot, max_requests, wake_w)
        signal.set_wakeup_fd(-1)
        # Scripts expect the dispositions a fresh CGI process has: the master's own handlers
        # go (its signals are for it alone: the logrotate snippet and systemd's reload
        # address the master's pid).
        for s in (signal.SIGHUP, signal.SIGCHLD, signal.SIGUSR1, signal.SIGTTIN, signal.SIGTTOU,
                  *HARMLESS_SIGNALS):
            signal.signal(s, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the master, which decides
        signal.signal(signal.SIGQUIT, lambda s, f: control.stop())
        signal.signal(signal.SIGTERM, lambda s, f: control.stop())
        try:
            self.child_init()
        except Exception:
            log.exception("worker boot failed")
            return WORKER_BOOT_ERROR
        control.booted()
        self._accept_loop(control, wake_r, master)
        return EXIT_OK

    def _accept_loop(self, control: WorkerControl, wake_r: int, master: int) -> None:
        listener = self.listener
        listener.setblocking(False)
        control.listener_fd = listener.fileno()
        while not control.stopping:
            # Accept first, wait only if nothing is queued: under load a connection is
            # usually waiting, and the select before it would be a system call for nothing.
            try:
                # Blocking, though the listener is not: Linux does not pass O_NONBLOCK on.
                conn, addr = listener.accept()
            except (BlockingIOError, InterruptedError):
                if not self._wait_for_connection(listener, wake_r, master):
                    return  # orphaned where PR_SET_PDEATHSIG does not exist
                continue
            except OSError as exc:
                if exc.errno in (errno.ECONNABORTED, errno.EPROTO):
                    continue
                raise
            try:
                self.handle(conn, addr, control)
            finally:
                conn.close()

    def _wait_for_connection(self, listener: socket.socket, wake_r: int, master: int) -> bool:
        """Until a connection may be waiting, a stop is asked for, or a second has passed;
        False if the master has gone meanwhile."""
        try:
            ready, _, _ = select.select([listener, wake_r], [], [], 1.0)  # type: ignore[type-var]
        except InterruptedError:
            return True
        return listener in ready or os.getppid() == master


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:  # real-time signals between SIGRTMIN and SIGRTMAX have no name
        return str(signum)


def die_with_parent() -> None:
    """Ask the kernel to SIGKILL this process when its parent dies, so none is orphaned."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    # else: not Linux; a worker notices the reparenting in its loop instead


def _load_prctl() -> Callable[..., int] | None:
    try:
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    except (OSError, AttributeError):
        return None


_prctl = _load_prctl()  # once: loading libc per fork costs a third of a fork
