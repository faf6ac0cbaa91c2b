"""The zygote: the clean preloaded process every site worker is forked from.

Forked by the master before any site is served, it holds the preloaded modules and nothing
of any site. Each site worker is a fork of it, so a cold start costs a fork, not an
interpreter, and no worker inherits another site's sockets or state.

The master talks to it over a SOCK_SEQPACKET pair (one pickled message per packet, the
site's listening socket attached to a spawn order). The zygote reports each worker's pid
when forked and its wait status when it exits (workers are the zygote's children).

A cold start should not wait for a fork, nor for the zygote to be scheduled: the zygote
keeps one spare child forked ahead, and hands the master a socket to it. The master sends
the next order straight to the spare, which becomes that site's worker, and asks the
zygote for a new spare, forked while the worker boots. Before it waits, the spare copies
the pages the last worker had to copy (prefault.py), so its own boot finds them copied.
"""

from __future__ import annotations

import array
import gc
import logging
import os
import pickle
import select
import signal
import socket
import struct
from dataclasses import dataclass
from typing import Callable

from ..runner.app import preload
from ..runner.scoreboard import Scoreboard
from ..runner.supervisor import die_with_parent
from . import prefault
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


@dataclass(frozen=True)
class Spare:
    """A clean child waiting for an order (its socket travels with this message)."""

    pid: int


_MAKE_SPARE = b"spare"
RELEARN_EVERY = 32  # spares: how often the pages a worker copies are read again (prefault.py)


class Zygote:
    """The master's handle on its zygote."""

    def __init__(self, preload_modules: tuple[str, ...], slots: Scoreboard,
                 activity: ActivityTable) -> None:
        self.preload_modules = preload_modules
        self.slots = slots
        self.activity = activity
        self.pid = -1
        self.sock: socket.socket | None = None
        self._spare: tuple[int, socket.socket] | None = None
        # The master's descriptors a zygote started later must not hand down to site code
        # (the admin's status socket and its connections).
        self.close_in_child: Callable[[], list[int]] = list

    def start(self) -> None:
        if self._spare is not None:  # a dead zygote's spare: died with it
            self._spare[1].close()
            self._spare = None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        pid = os.fork()
        if pid == 0:
            ours.close()
            for fd in self.close_in_child():
                os.close(fd)
            _zygote_main(theirs, self.preload_modules, self.slots, self.activity)  # never returns
        theirs.close()
        self.pid, self.sock = pid, ours

    def spawn(self, order: SpawnOrder, listener: socket.socket) -> int | None:
        """Start a worker: the spare's pid if the spare took the order, else None (the
        zygote forks one and reports it as Spawned)."""
        assert self.sock is not None
        payload = [pickle.dumps(order)]
        if self._spare is not None:
            pid, spare = self._spare
            self._spare = None
            try:
                socket.send_fds(spare, payload, [listener.fileno()])
                return pid
            except OSError:
                pass  # it died meanwhile: its Exited comes; the zygote forks one
            finally:
                spare.close()
                self.sock.send(_MAKE_SPARE)
        socket.send_fds(self.sock, payload, [listener.fileno()])
        return None

    def receive(self) -> list[Spawned | Exited]:
        """Every message waiting (the socket is non-blocking for this)."""
        assert self.sock is not None
        messages: list[Spawned | Exited] = []
        while True:
            try:
                data, fds = _recv_nowait(self.sock)
            except (BlockingIOError, InterruptedError):
                return messages
            if not data:
                raise EOFError("the zygote is gone")
            message = pickle.loads(data)
            if isinstance(message, Spare):
                if self._spare is not None:
                    self._spare[1].close()
                self._spare = (message.pid, socket.socket(fileno=fds[0]))
                continue
            if isinstance(message, Exited) and self._spare and self._spare[0] == message.pid:
                self._spare[1].close()
                self._spare = None
                self.sock.send(_MAKE_SPARE)
            messages.append(message)

    def stop(self) -> None:
        if self._spare is not None:
            self._spare[1].close()
            self._spare = None
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


def _zygote_main(sock: socket.socket, modules: tuple[str, ...], slots: Scoreboard,
                 activity: ActivityTable) -> None:
    code = 0
    try:
        die_with_parent()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w)
        signal.signal(signal.SIGCHLD, lambda s, f: None)
        for s in (signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1):
            signal.signal(s, signal.SIG_IGN)  # the master decides; it stops us by closing
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        preload(modules, _NO_SITE)
        # What is loaded now never changes here: out of the collector's sight, a worker's
        # first collection does not touch (and so copy) every page it inherited.
        gc.collect()
        gc.freeze()
        learner = prefault.Learner(RELEARN_EVERY)
        _fork_spare(sock, wake_r, wake_w, slots, activity, learner)
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
                if data == _MAKE_SPARE:
                    learner.taken()
                    _fork_spare(sock, wake_r, wake_w, slots, activity, learner)
                    continue
                order: SpawnOrder = pickle.loads(data)
                pid = os.fork()
                if pid == 0:
                    os.close(wake_r)
                    os.close(wake_w)
                    sock.close()
                    learner.close()
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


def _fork_spare(sock: socket.socket, wake_r: int, wake_w: int, slots: Scoreboard,
                activity: ActivityTable, learner: prefault.Learner) -> None:
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    pages = learner.for_next_spare()
    pid = os.fork()
    if pid == 0:
        os.close(wake_r)
        os.close(wake_w)
        sock.close()
        ours.close()
        learner.close()
        _spare_main(theirs, slots, activity, pages)  # never returns
    theirs.close()
    learner.forked(pid)  # before the master may hand it an order and it changes owner
    socket.send_fds(sock, [pickle.dumps(Spare(pid))], [ours.fileno()])
    ours.close()


def _spare_main(sock: socket.socket, slots: Scoreboard, activity: ActivityTable,
                pages: list[tuple[int, int]]) -> None:
    code = 0
    try:
        die_with_parent()  # not inherited across fork
        signal.set_wakeup_fd(-1)
        poll = select.poll()
        poll.register(sock, select.POLLIN)
        prefault.copy_ahead(pages, lambda: bool(poll.poll(0)))
        while True:
            try:
                data, fds, _, _ = socket.recv_fds(sock, 65536, 4)
                break
            except InterruptedError:
                continue
        sock.close()
        if data and fds:
            _worker(pickle.loads(data), fds[0], slots, activity)  # never returns
    except BaseException:  # noqa: B036 - never return into the zygote's code
        code = 1
    finally:
        os._exit(code)


def _worker(order: SpawnOrder, fd: int, slots: Scoreboard, activity: ActivityTable) -> None:
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for s in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT, signal.SIGUSR1):
            signal.signal(s, signal.SIG_DFL)
        code = serve_site(order, socket.socket(fileno=fd), slots, activity)
    except BaseException:  # noqa: B036
        try:
            log.exception("site %s: worker failed", order.site)
        except BaseException:  # noqa: B036
            pass
    finally:
        os._exit(code)


def _recv_nowait(sock: socket.socket) -> tuple[bytes, list[int]]:
    """One message and the descriptors it carries, without waiting (socket.recv_fds
    ignores its flags argument)."""
    size = socket.CMSG_LEN(struct.calcsize("i"))
    data, ancillary, _, _ = sock.recvmsg(4096, size, socket.MSG_DONTWAIT)
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += array.array("i", payload[:len(payload) - len(payload) % 4]).tolist()
    return data, fds


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
