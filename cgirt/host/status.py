"""The host master's status: one admin-only address, every site a pool.

The same address takes the FTP gateway's signed notices for the host's sites (notices.py).

The runner's status server (runner/statusserver.py) answers; each site has a `SiteMonitor`
that reads the master's account of the site's workers and the shared request clocks.
A monitor outlives its SitePool (a reload may replace the pool), so its counters and the
requests of workers gone are kept across reloads, as a PHP-FPM pool's are.

Sampling costs a netlink request per site (its listen queue): the master samples only the
sites it looks at in a step, never a thousand idle ones.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable

from ..configfile import ConfigFile
from ..errors import ConfigError
from ..runner.listenqueue import listen_queue
from ..runner.scoreboard import Scoreboard
from ..runner.server import bind
from ..runner.statusserver import StatusServer, check_unix_path
from ..status import PoolStatus, WorkerStatus, summarise, worker_state
from .settings import HostSettings

if TYPE_CHECKING:
    from .master import SitePool


def host_status_address(settings: HostSettings, config_path: Path) -> str | None:
    """The [host] status address, else a unix socket in the host's state directory; None when
    turned off."""
    if settings.status_listen == "off":
        return None
    return settings.status_listen or f"unix:{state_dir(settings, config_path) / 'status.sock'}"


def host_address(main: ConfigFile, required: bool) -> str | None:
    """`cgirt status --config FILE`: the address of the host's status, from its [host] table.
    None when the host has none here and it is not `required` (a site may have its own
    runner's)."""
    settings = HostSettings.from_values(main.table("host"))
    address = host_status_address(settings, main.path)
    if address is None:
        if not required:
            return None
        raise ConfigError(f"{main.path}: status_listen is \"off\" in [host]: the host has no status")
    if not required and address.startswith("unix:") and not Path(address[5:]).exists():
        return None
    return address


def state_dir(settings: HostSettings, config_path: Path) -> Path:
    return config_path.parent / settings.state_dir


class SiteMonitor:
    def __init__(self, pool: "SitePool", slots: Scoreboard) -> None:
        self.name = pool.name
        self.pool = pool
        self.slots = slots
        self.started_at = time.time()
        self.retired_requests = 0  # of workers gone
        self.slow_requests = 0
        self.max_active = 0
        self.max_listen_queue = 0
        self.max_children_reached = 0
        self._all_busy = False

    def worker_gone(self, slot: int) -> None:
        """Before the master clears a reaped worker's slot: keep its requests counted."""
        self.retired_requests += self.slots.read(slot).requests

    def sample(self) -> None:
        pool = self.pool
        live = [w for w in pool.workers.values() if w.retiring_since is None]
        active = sum(1 for w in pool.workers.values() if self.slots.get(w.slot)[0])
        self.max_active = max(self.max_active, active)
        # As PHP-FPM's "max children reached": every worker the site may have is busy.
        all_busy = len(live) >= pool.spec.max_workers and all(self.slots.get(w.slot)[0] for w in live)
        if all_busy and not self._all_busy:
            self.max_children_reached += 1
        self._all_busy = all_busy
        if pool.listener is not None:
            queue = listen_queue(pool.listener)
            if queue is not None:
                self.max_listen_queue = max(self.max_listen_queue, queue[0])

    def snapshot(self) -> PoolStatus:
        self.sample()  # what is seen now counts too, whether or not a step sampled it
        pool = self.pool
        mono, wall = time.monotonic(), time.time()
        workers = []
        for w in sorted(pool.workers.values(), key=lambda w: w.spawned_at):
            if not w.pid:
                continue  # the zygote has not said its pid yet
            v = self.slots.read(w.slot)
            state = worker_state(bool(v.booted), bool(v.started), w.retiring_since is not None)
            duration = mono - v.started if v.started else v.last_duration
            workers.append(WorkerStatus(w.pid, state, wall - (mono - w.spawned_at), v.requests,
                                        v.method, v.uri, v.script, max(duration, 0.0),
                                        v.last_cpu, v.peak_rss_kib))
        queue = listen_queue(pool.listener) if pool.listener is not None else None
        if queue is not None:
            self.max_listen_queue = max(self.max_listen_queue, queue[0])
        return summarise(self.name, pool.spec.pool.pm, self.started_at, self.retired_requests,
                         queue, self.max_listen_queue, self.max_active,
                         self.max_children_reached, self.slow_requests, workers)


class HostStatus:
    """The status server of a host master and a monitor per site, kept across reloads."""

    def __init__(self, listener: socket.socket, address: str, slots: Scoreboard,
                 on_notice: Callable[[str, str, str], bytes] | None = None) -> None:
        self.server = StatusServer(listener, [], on_notice)
        self.address = address
        self.slots = slots
        self.monitors: dict[str, SiteMonitor] = {}

    def monitor(self, pool: "SitePool") -> SiteMonitor:
        """The site's monitor, now reading `pool` (a reload may have replaced it)."""
        m = self.monitors.get(pool.name)
        if m is None:
            m = self.monitors[pool.name] = SiteMonitor(pool, self.slots)
        m.pool = pool
        return m

    def sites(self, pools: Iterable["SitePool"]) -> None:
        """The sites served now, in the order of the configuration; the others are forgotten."""
        current = [self.monitor(p) for p in pools]
        self.monitors = {m.name: m for m in current}
        self.server.monitors = list(current)

    def sample(self, pools: Iterable["SitePool"]) -> None:
        for pool in pools:
            m = self.monitors.get(pool.name)
            if m is not None and m.pool is pool:
                m.sample()

    def close(self) -> None:
        self.server.close()
        if self.address.startswith("unix:"):
            try:
                Path(self.address[5:]).unlink()
            except OSError:
                pass


def bind_host_status(settings: HostSettings, config_path: Path) -> tuple[socket.socket, str] | None:
    """The host's status socket; an address that cannot be bound stops the start (StartupError)."""
    address = host_status_address(settings, config_path)
    if address is None:
        return None
    check_unix_path(address)
    if address.startswith("unix:") and not settings.status_listen:
        state_dir(settings, config_path).mkdir(mode=0o700, parents=True, exist_ok=True)
    return bind(address, settings.status_socket_mode), address
