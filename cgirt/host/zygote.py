"""The zygote: a clean process, forked by the master before any site is served, holding the
preloaded modules and nothing of any site. Each site worker is a fork of it, so a cold start
costs a fork, not an interpreter, and no worker inherits another site's sockets or state.

The master talks to it over a SOCK_SEQPACKET pair (one pickled message per packet, the
site's listening socket attached to a spawn order). The zygote reports each worker's pid
when forked and its wait status when it exits (workers are the zygote's children).
"""

from __future__ import annotations

import gc
import logging
import os
import pickle
import select
import signal
import socket
from dataclasses import dataclass

from ..runner.app import preload
from ..runner.supervisor import SlotTable, die_with_parent
from .worker import ActivityTable, SpawnOrder, serve_site

log = logging.getLogger("cgirt.error")
_NO_SITE = "\0"  # no module path starts with it: nothing is left out of the preload as a site's


@dataclass(frozen=True)
class Spawned:
    slot: int
    pid: int


@dataclass(frozen=True)
class Exited:
    pid: int
    status: int


class Zygote:
    """The master's handle on its zygote."""

    def __init__(self, preload_modules: tuple[str, ...], slots: SlotTable,
                 activity: ActivityTable) -> None:
        self.preload_modules = preload_modules
        self.slots = slots
        self.activity = activity
        self.pid = -1
        self.sock: socket.socket | None = None

    def start(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            _zygote_main(theirs, self.preload_modules, self.slots, self.activity)  # never returns
        theirs.close()
        self.pid, self.sock = pid, ours

    def spawn(self, order: SpawnOrder, listener: socket.socket) -> None:
        assert self.sock is not None
        socket.send_fds(self.sock, [pickle.dumps(order)], [listener.fileno()])

    def receive(self) -> list[Spawned | Exited]:
        """Every message waiting (the socket is non-blocking for this)."""
        assert self.sock is not None
        messages: list[Spawned | Exited] = []
        while True:
            try:
                data = self.sock.recv(4096, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return messages
            if not data:
                raise EOFError("the zygote is gone")
            messages.append(pickle.loads(data))

    def stop(self) -> None:
        if self.sock is not None:
            self.sock.close()  # the zygote exits on end of file; its workers die with it
            self.sock = None
        if self.pid > 0:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
            self.pid = -1


def _zygote_main(sock: socket.socket, modules: tuple[str, ...], slots: SlotTable,
                 activity: ActivityTable) -> None:
    code = 0
    try:
        die_with_parent()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda s, f: None)
        for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
            signal.signal(s, signal.SIG_IGN)  # the master decides; it stops us by closing
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        preload(modules, _NO_SITE)
        # What is loaded now never changes here: out of the collector's sight, a worker's
        # first collection does not touch (and so copy) every page it inherited.
        gc.collect()
        gc.freeze()
        while True:
            try:
                ready, _, _ = select.select([sock.fileno(), wake_r], [], [])
            except InterruptedError:
                continue
            if wake_r in ready:
                _drain(wake_r)
                _reap(sock)
            if sock.fileno() in ready:
                data, fds, _, _ = socket.recv_fds(sock, 65536, 4)
                if not data:
                    break  # the master is gone or stopping
                order: SpawnOrder = pickle.loads(data)
                pid = os.fork()
                if pid == 0:
                    os.close(wake_r)
                    os.close(wake_w)
                    sock.close()
                    _worker(order, fds[0], slots, activity)  # never returns
                for fd in fds:
                    os.close(fd)
                sock.send(pickle.dumps(Spawned(order.slot, pid)))
    except (EOFError, OSError):
        pass
    except BaseException:  # noqa: B036 - never return into the master's code
        code = 1
        try:
            log.exception("zygote failed")
        except BaseException:  # noqa: B036
            pass
    finally:
        os._exit(code)


def _worker(order: SpawnOrder, fd: int, slots: SlotTable, activity: ActivityTable) -> None:
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT):
            signal.signal(s, signal.SIG_DFL)
        code = serve_site(order, socket.socket(fileno=fd), slots, activity)
    except BaseException:  # noqa: B036
        try:
            log.exception("site %s: worker failed", order.site)
        except BaseException:  # noqa: B036
            pass
    finally:
        os._exit(code)


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _reap(sock: socket.socket) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        sock.send(pickle.dumps(Exited(pid, status)))
