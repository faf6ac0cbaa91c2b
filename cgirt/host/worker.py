"""A site's worker under `cgirt host`: the site's app and the runner's worker loop.

Forked by the zygote, it builds the site's app, drops to the site owner (app.child_init)
and serves with the runner's own worker loop.

Shared with the master (anonymous memory mapped before the zygote was forked): the
runner's request clocks (Scoreboard: the master's deadline) and an activity table, this
module's own, with when each worker last finished a connection (the master's idle timeout)
and whether it met a fork-mode request (later workers of the site start the template at
boot, while still clean); and beside it each slot's publish epoch (runner/freshness.py),
which the master bumps on a publish notice for the worker's site.
"""

from __future__ import annotations

import mmap
import os
import socket
import struct
import time
from dataclasses import dataclass
from typing import NoReturn

from ..config import RunnerConfig
from ..fastcgi.server import FastCGIServer, io_timeout
from ..runner.app import CgiApp
from ..runner.freshness import PublishEpoch
from ..runner.scoreboard import Scoreboard
from ..runner.supervisor import Supervisor, SupervisorSettings, WorkerControl

_ACTIVITY = struct.Struct("dB")  # last connection finished (monotonic), met fork mode


class ActivityTable:
    def __init__(self, size: int) -> None:
        self.size = size
        self._mem = mmap.mmap(-1, _ACTIVITY.size * size)
        self._epochs = mmap.mmap(-1, PublishEpoch.SIZE * size)

    def publishes(self, slot: int) -> PublishEpoch:
        """The publish epoch of the worker in `slot`: the master writes, the worker reads."""
        return PublishEpoch(self._epochs, slot)

    def touch(self, slot: int) -> None:
        _, fork = _ACTIVITY.unpack_from(self._mem, slot * _ACTIVITY.size)
        _ACTIVITY.pack_into(self._mem, slot * _ACTIVITY.size, time.monotonic(), fork)

    def wants_fork(self, slot: int) -> None:
        last, _ = _ACTIVITY.unpack_from(self._mem, slot * _ACTIVITY.size)
        _ACTIVITY.pack_into(self._mem, slot * _ACTIVITY.size, last, 1)

    def reset(self, slot: int) -> None:
        _ACTIVITY.pack_into(self._mem, slot * _ACTIVITY.size, time.monotonic(), 0)

    def get(self, slot: int) -> tuple[float, bool]:
        last, fork = _ACTIVITY.unpack_from(self._mem, slot * _ACTIVITY.size)
        return last, bool(fork)


@dataclass(frozen=True)
class SpawnOrder:
    """What the master asks of the zygote (pickled; the listener travels as an fd)."""

    site: str
    config: RunnerConfig
    slot: int
    max_conns: int
    fork_template: bool  # start the fork-mode template at boot


class HostApp(CgiApp):
    def __init__(self, config: RunnerConfig, slot: int, activity: ActivityTable,
                 fork_template: bool) -> None:
        super().__init__(config)
        self.slot = slot
        self.activity = activity
        self.fork_template = fork_template
        self.publishes = activity.publishes(slot)  # the master's, not a page of our own

    def _fork_eager(self) -> bool:
        # The master knows whether the site uses fork mode (its mode, or a worker's word).
        return self.fork_template

    def _fork_used(self) -> None:
        # Workers are forked by the zygote, not by a master that could share a byte with
        # all of them: the master reads it in the activity table for the site's next ones.
        self.activity.wants_fork(self.slot)

    def child_init(self) -> None:
        super().child_init()  # its privilege drop asks again for the parent-death signal
        self.activity.reset(self.slot)


def serve_site(order: SpawnOrder, listener: socket.socket, slots: Scoreboard,
               activity: ActivityTable) -> NoReturn:
    """In the zygote's fresh child: serve the site until told to stop, then exit (never
    returns into the zygote's loop)."""
    config = order.config
    app = HostApp(config, order.slot, activity, order.fork_template)
    fcgi = FastCGIServer(app, max_conns=order.max_conns, io_timeout=io_timeout(config))

    def handle(conn: socket.socket, addr: object, control: WorkerControl) -> None:
        try:
            fcgi.handle_connection(conn, addr, control)
        finally:
            activity.touch(order.slot)

    # The runner's own worker loop, on the host's shared request clocks.
    worker = Supervisor(listener, handle, SupervisorSettings(
        workers=1, max_requests=config.max_requests,
        max_requests_jitter=config.max_requests_jitter), child_init=app.child_init)
    worker.run_worker(slots, order.slot, os.getppid())
