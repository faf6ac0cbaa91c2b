"""The host master: one process for every site of the host.

It binds each site's socket, forks the zygote, and from then on only watches: a site's
socket with a connection waiting and no free worker, its pool's decision (pool.py), the
host-wide cap, request deadlines, workers that fail at boot or crash (that site backs off,
no other notices), signals, and the FTP gateway's notices on its status address
(notices.py: a publish bumps the epoch of that site's workers, a reload replaces them). It
runs no site code and forks no worker itself.

Signals are only recorded; the loop acts on them (SIGHUP reloads the configuration,
SIGUSR2 replaces the workers of the sites that asked for it, SIGTERM stops after in-flight
requests, SIGINT and SIGQUIT stop at once).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import resource
import select
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import site as site_layout
from ..errors import ConfigError, StartupError
from ..log import setup_runner_logging
from ..logfiles import Rotator, owned_like, shared_counter
from ..sitefiles import remove_pid, unlink, write_pid
from ..runner.server import _warn_if_readable_by_other_sites, bind, describe
from ..runner.scoreboard import Scoreboard
from ..runner.slowlog import SLOW_SIGNAL
from .config import HostPlan, SiteSpec, load
from .notices import HostNotices
from .notify import notify
from .pool import PoolView, decide
from .settings import HostSettings
from .status import HostStatus, bind_host_status
from .worker import ActivityTable, SpawnOrder
from .zygote import Exited, Spawned, Zygote

log = logging.getLogger("cgirt.error")

TICK = 0.1
LIMIT_LOG_EVERY = 60.0  # "reached max_workers" at most once a minute per site
# Sizes of the logs of sites with workers are looked at every second (and at once when a
# writer says a file passed its bound); of every site, once a minute (the gateway's
# deploy.log grows without workers).
ROTATE_ACTIVE_EVERY, ROTATE_ALL_EVERY = 1.0, 60.0
CRASH_WINDOW, CRASHES_TO_PAUSE = 10.0, 5
MAX_BACKOFF = 60.0


@dataclass
class Worker:
    slot: int
    pool: "SitePool"
    spawned_at: float
    pid: int = 0  # until the zygote reports it
    retiring_since: float | None = None
    killed_for_deadline: bool = False
    slow_flagged: float = 0.0  # the start of the request it was last sent SLOW_SIGNAL for


@dataclass
class SitePool:
    spec: SiteSpec
    listener: socket.socket | None = None
    workers: dict[int, Worker] = field(default_factory=dict)  # by slot
    backoff_until: float = 0.0
    failures: int = 0
    crashes: collections.deque[float] = field(default_factory=collections.deque)
    limit_logged: float = float("-inf")
    uses_fork: bool = False
    removed: bool = False  # draining: gone from the configuration
    rotator: Rotator | None = None  # its logs, once served
    noticed_at: float = float("-inf")  # the last publish notice (monotonic)
    notices: int = 0  # publish notices taken

    def in_publish_window(self, now: float) -> bool:
        """After a publish notice, workers started now must force their stats too: the
        mount's attribute cache is the machine's, not a worker's."""
        return now - self.noticed_at < self.spec.runner.publish_window

    @property
    def name(self) -> str:
        return self.spec.name


class HostMaster:
    def __init__(self, config_path: Path, plan: HostPlan) -> None:
        self.config_path = config_path
        self.plan = plan
        self.capacity = plan.settings.max_workers_total  # slots: fixed until restart
        self.slots = Scoreboard(self.capacity)
        self.activity = ActivityTable(self.capacity)
        # Every worker of every site inherits it from the zygote: a rotation or SIGUSR1 of any
        # site makes every worker compare (no system call) and reopen its own site's logs.
        self.log_counter = shared_counter()
        self.zygote = Zygote(plan.preload, self.slots, self.activity)
        self.pools: dict[str, SitePool] = {}
        self.draining: list[SitePool] = []
        self.by_pid: dict[int, Worker] = {}
        self._signals: list[int] = []
        self._running = True
        self._stop_deadline: float | None = None
        self._total_logged = float("-inf")
        self._epoll: select.epoll | None = None
        self._watched: dict[int, SitePool] = {}  # listener fd -> pool
        self._waiting: set[str] = set()
        # A step looks only at the sites that need it: with workers, waiting connections, a
        # static or dynamic pool, a back-off. An idle on-demand site costs nothing per step:
        # its socket stays watched until a connection comes.
        self._active: set[str] = set()
        self._unreported = 0  # workers ordered from the zygote, pid not known yet
        self._by_slot: dict[int, Worker] = {}  # those, by slot
        self._free_slots = list(range(self.capacity - 1, -1, -1))
        self._was_full = False
        self._next_sweep = 0.0
        self._dirty: set[str] = set()  # sites whose workers changed since the last step
        self._total_checked = float("-inf")
        self.status: HostStatus | None = None
        self.notices = HostNotices(self._on_publish, self._on_reload_notice)
        self._status_fds: set[int] = set()  # registered with epoll
        self._rotate_active = self._rotate_all = 0.0  # when next
        self.exit_status = 0

    # -- start and stop ---------------------------------------------------------------

    def run(self) -> int:
        _raise_fd_limit()
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_r, False)
        os.set_blocking(wake_w, False)
        old_wakeup = signal.set_wakeup_fd(wake_w)
        handled = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGCHLD,
                   signal.SIGUSR1, site_layout.HOST_SITE_RELOAD_SIGNAL)
        previous = {s: signal.signal(s, self._record_signal) for s in handled}
        self._epoll = select.epoll()
        # The first zygote is started before any of these is open; one started again after
        # a crash closes them, so that it too holds no site's socket (nor the admin's).
        self.zygote.close_in_child = self._opened_after_the_zygote
        try:
            self.zygote.start()
            assert self.zygote.sock is not None
            bound = bind_host_status(self.plan.settings, self.config_path)
            if bound is not None:  # after the zygote: no site worker inherits it
                self.status = HostStatus(*bound, self.slots, self.notices)
            for spec in self.plan.sites.values():
                self._start_site(spec)
            self.notices.sites(self.plan.sites.values())
            if self.status is not None:
                self.status.sites(self.pools.values())
                log.info("cgirt host: status on %s", self.status.address)
            self._epoll.register(wake_r, select.EPOLLIN)
            self._epoll.register(self.log_counter.poke_r, select.EPOLLIN)
            self._epoll.register(self.zygote.sock.fileno(), select.EPOLLIN)
            log.info("cgirt host: %d sites, at most %d workers in all",
                     len(self.pools), self.capacity)
            notify("READY=1")
            while self._running:
                self._wait(wake_r)
                self.step(time.monotonic())
                self._watch_status()
            notify("STOPPING=1")
        finally:
            self.zygote.stop()
            if self.status is not None:
                self.status.close()
            for pool in [*self.pools.values(), *self.draining]:
                self._close_listener(pool)
            for s, h in previous.items():
                signal.signal(s, h)
            signal.set_wakeup_fd(old_wakeup)
            self._epoll.close()
            os.close(wake_r)
            os.close(wake_w)
        return self.exit_status

    def _start_site(self, spec: SiteSpec) -> None:
        """Listen for a site, unless it cannot be served; a site's problem is its own."""
        pool = SitePool(spec)
        self.pools[spec.name] = pool
        config = spec.runner
        try:
            if not config.site.is_dir():
                raise StartupError(f"site directory {config.site} does not exist")
            owner = os.stat(config.site).st_uid
            if os.geteuid() == 0 and owner == 0 and not spec.pool.allow_root_site:
                raise StartupError(f"{config.site} is owned by root, so its scripts would run as "
                                   "root: refused (chown it to the site's owner, or set "
                                   "allow_root_site = true)")
            site_layout.ensure_state(config.site)
            _warn_if_readable_by_other_sites(config)
            # With host_name, as under `cgirt serve`: this host's own files on a shared tree.
            logs, always = site_layout.rotated_logs(config.host_name, config.access_log)
            pool.rotator = Rotator(
                site_layout.logs_dir(config.site), logs, self.log_counter,
                config.log_max_size, config.log_backups, owned_like(config.site), always=always,
                anchor=config.site)
            pool.listener = bind(config.listen, config.socket_mode)
        except (StartupError, OSError) as exc:
            log.error("site %s: not served: %s", spec.name, exc)
            return
        try:  # SITE RELOAD (FTP) and logrotate signal the pid they find there: ours
            write_pid(config.site, site_layout.runner_pid_path(config.site, config.host_name))
        except OSError as exc:
            log.warning("site %s: cannot write its runner.pid (%s): SITE RELOAD over FTP will "
                        "not reach it", spec.name, exc.strerror)
        if spec.pool.pm != "ondemand":
            self._active.add(spec.name)
        self._watch(pool, time.monotonic(), self._live() >= self.plan.settings.max_workers_total)
        log.info("site %s: %s on %s (pm %s, at most %d workers)", spec.name, config.site,
                 describe(pool.listener), spec.pool.pm, spec.max_workers)

    def _close_listener(self, pool: SitePool) -> None:
        if pool.listener is None:
            return
        self._unwatch(pool.listener.fileno())
        if pool.spec.runner.listen.startswith("unix:"):
            try:
                os.unlink(pool.spec.runner.listen[5:])
            except OSError:
                pass
        pool.listener.close()
        pool.listener = None
        site = pool.spec.runner.site
        try:
            remove_pid(site, site_layout.runner_pid_path(site, pool.spec.runner.host_name))
        except OSError:
            pass

    # -- the loop -----------------------------------------------------------------------

    def _record_signal(self, signum: int, frame: object) -> None:
        self._signals.append(signum)

    def _wait(self, wake_r: int) -> None:
        assert self._epoll is not None
        try:
            events = self._epoll.poll(TICK)
        except InterruptedError:
            return
        for fd, _ in events:
            if fd == wake_r:
                _drain(wake_r)
            elif fd == self.log_counter.poke_r:
                _drain(fd)
                self._rotate_active = 0.0  # a writer passed its bound: now
            elif self.zygote.sock is not None and fd == self.zygote.sock.fileno():
                self._from_zygote()
            elif fd in self._watched:
                self._waiting.add(self._watched[fd].name)
            elif fd in self._status_fds and self.status is not None:
                self.status.server.on_readable(fd)

    def step(self, now: float) -> None:
        """One turn: signals, worker news, deadlines, then each site's pool decision."""
        while self._signals:
            self._on_signal(self._signals.pop(0), now)
        self._check_zygote()
        # Deadlines, idle timeouts and the state of busy sites are looked at once a tick;
        # between ticks a step handles only the sites an event concerns (a connection
        # waiting, a worker gone), so that a host with many busy sites costs the master
        # little per request.
        sweep = now >= self._next_sweep
        if sweep:
            self._next_sweep = now + TICK
            self._enforce_deadlines(now)
        if now >= self._rotate_active:
            self._rotate_logs(now)
            if self.status is not None:
                self.status.server.expire(now)
        if self._stop_deadline is not None:
            if not self.by_pid and not any(w for p in self._all_pools() for w in p.workers.values()):
                self._running = False
            return
        if self.draining:
            self.draining = [p for p in self.draining if p.workers]
        full = self._live() >= self.plan.settings.max_workers_total
        if full != self._was_full:
            self._was_full = full
            touched = list(self.pools.values())  # every site's watch changes with it
        else:
            names = self._waiting | self._dirty | (self._active if sweep else set())
            touched = [self.pools[n] for n in names if n in self.pools]
        self._dirty.clear()
        for pool in touched:
            self._manage(pool, now)
        if self.status is not None:
            self.status.sample(touched)
        full = self._live() >= self.plan.settings.max_workers_total
        for pool in touched:
            self._watch(pool, now, full)
            if not pool.workers and pool.spec.pool.pm == "ondemand" and now >= pool.backoff_until:
                self._active.discard(pool.name)
        if full:
            self._log_total_reached(now)
        self._waiting.clear()

    def _rotate_logs(self, now: float) -> None:
        every = now >= self._rotate_all
        if every:
            self._rotate_all = now + ROTATE_ALL_EVERY
        self._rotate_active = now + ROTATE_ACTIVE_EVERY
        for pool in self._all_pools():
            if pool.rotator is not None and (every or pool.workers):
                pool.rotator.tick(now)

    def _live(self) -> int:
        return len(self.by_pid) + self._unreported

    def _all_pools(self) -> list[SitePool]:
        return [*self.pools.values(), *self.draining]

    def _opened_after_the_zygote(self) -> list[int]:
        """Every site's listening socket and the status server's descriptors."""
        fds = [p.listener.fileno() for p in self._all_pools() if p.listener is not None]
        return fds + (self.status.server.fds() if self.status is not None else [])

    def _on_signal(self, signum: int, now: float) -> None:
        if signum == signal.SIGHUP and self._stop_deadline is None:
            self.reload(now)
            self._reload_requested(now)
        elif signum == site_layout.HOST_SITE_RELOAD_SIGNAL and self._stop_deadline is None:
            self._reload_requested(now)  # SITE RELOAD, `cgirt reload`: the configuration stays
        elif signum == signal.SIGUSR1:
            # After logrotate: every site's logs (the counter's bump reaches every worker)
            # and the host's own log_file.
            try:
                for pool in self._all_pools():
                    if pool.rotator is not None:
                        pool.rotator.reopen()
                self.log_counter.bump()
                log.info("SIGUSR1: log files reopened")
            except OSError as exc:
                log.error("cgirt host: reopening the logs: %s", exc)
        elif signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
            graceful = signum == signal.SIGTERM
            bound = max((p.spec.runner.graceful_timeout for p in self._all_pools()), default=30.0)
            deadline = now + (bound if graceful else 1.0)
            if self._stop_deadline is None or deadline < self._stop_deadline:
                self._stop_deadline = deadline
            for pool in self._all_pools():
                self._close_listener(pool)
                for w in pool.workers.values():
                    self._retire(w, now)

    def _reload_requested(self, now: float) -> None:
        """SITE RELOAD: the sites whose request file is there get new workers; requests in
        flight finish. A stat per site."""
        for pool in self.pools.values():
            request = site_layout.reload_request_path(pool.spec.runner.site)
            try:
                unlink(pool.spec.runner.site, request)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.error("site %s: cannot remove %s (%s): reloading it anyway", pool.name,
                          request, exc.strerror)
            log.info("site %s: reload asked; replacing its workers", pool.name)
            self._replace_workers(pool, now)

    def _replace_workers(self, pool: SitePool, now: float) -> None:
        """Requests in flight finish; new workers come as the site's pool decides."""
        for w in pool.workers.values():
            self._retire(w, now)
        pool.failures, pool.backoff_until = 0, 0.0
        self._active.add(pool.name)
        self._dirty.add(pool.name)

    # -- the gateway's notices (notices.py has checked them) -------------------------------

    def _on_publish(self, name: str) -> int:
        """Every later request of the site's workers, those started later included, sees
        the publish: the notice is acknowledged once this returns."""
        pool = self.pools[name]
        pool.noticed_at = time.monotonic()
        pool.notices += 1
        for w in pool.workers.values():
            self.activity.publishes(w.slot).bump()
        log.info("site %s: publish notice %d", name, pool.notices)
        return pool.notices

    def _on_reload_notice(self, name: str) -> None:
        log.info("site %s: reload notice; replacing its workers", name)
        self._replace_workers(self.pools[name], time.monotonic())

    # -- the pools ------------------------------------------------------------------------

    def _view(self, pool: SitePool, now: float) -> PoolView:
        live = booting = 0
        idle: list[tuple[float, int]] = []
        for w in pool.workers.values():
            if w.retiring_since is not None:
                continue
            live += 1
            started, booted = self.slots.get(w.slot)
            if not booted:
                booting += 1
            elif not started:
                last, _ = self.activity.get(w.slot)
                idle.append((now - last, w.slot))
        # Still waiting? A worker that was busy when the connection came may have taken it
        # since: a worker started for nothing costs a fork and a boot.
        waiting = (pool.name in self._waiting and not idle and not booting
                   and pool.listener is not None and _readable(pool.listener))
        return PoolView(live, booting, idle, waiting)

    def _manage(self, pool: SitePool, now: float) -> None:
        if pool.listener is None:
            return
        spec = pool.spec
        view = self._view(pool, now)
        if view.booting == 0 and pool.failures and any(
                self.slots.get(w.slot)[1] for w in pool.workers.values()):
            pool.failures = 0  # one booted: the site works again
        decision = decide(spec.pool, spec.runner.workers, spec.max_workers, view)
        for slot in decision.retire:
            self._retire(pool.workers[slot], now)
        if now < pool.backoff_until:
            return
        wanted = decision.start
        if (wanted == 0 and view.live >= spec.max_workers and not view.idle
                and now - pool.limit_logged >= LIMIT_LOG_EVERY and _readable(pool.listener)):
            pool.limit_logged = now
            log.warning("site %s reached max_workers (%d): connections queue on its socket",
                        pool.name, spec.max_workers)
        for _ in range(wanted):
            if self._live() >= self.plan.settings.max_workers_total:
                if now - self._total_logged >= LIMIT_LOG_EVERY:
                    self._total_logged = now
                    log.warning("host reached max_workers_total (%d): site %s waits",
                                self.plan.settings.max_workers_total, pool.name)
                return
            self._spawn(pool, now)

    def _spawn(self, pool: SitePool, now: float) -> None:
        assert pool.listener is not None
        slot = self._free_slots.pop()
        self.slots.set(slot, 0.0, 0)
        self.activity.reset(slot)
        self.activity.publishes(slot).set(1 if pool.in_publish_window(now) else 0)
        spec = pool.spec
        order = SpawnOrder(spec.name, spec.runner, slot, spec.max_workers,
                           fork_template=pool.uses_fork or spec.runner.mode == "fork")
        w = pool.workers[slot] = Worker(slot, pool, now)
        self._active.add(pool.name)
        pid = self.zygote.spawn(order, pool.listener)
        if pid is None:
            self._by_slot[slot] = w
            self._unreported += 1
        else:
            w.pid = pid
            self.by_pid[pid] = w

    def _retire(self, w: Worker, now: float) -> None:
        if w.retiring_since is None:
            w.retiring_since = now
            if w.pid:
                _kill(w.pid, signal.SIGTERM)

    def _enforce_deadlines(self, now: float) -> None:
        for w in self.by_pid.values():
            runner = w.pool.spec.runner
            started, _ = self.slots.get(w.slot)
            if started and now - started > runner.timeout + runner.kill_grace:
                if not w.killed_for_deadline:
                    log.error("site %s: worker %d: request exceeded its deadline; killing it",
                              w.pool.name, w.pid)
                w.killed_for_deadline = True
                _kill(w.pid, signal.SIGKILL)
            elif (started and runner.slowlog_timeout and w.slow_flagged != started
                    and now - started > runner.slowlog_timeout):
                w.slow_flagged = started  # once per request, as the runner's supervisor
                if self.status is not None:
                    self.status.monitor(w.pool).slow_requests += 1
                _kill(w.pid, SLOW_SIGNAL)
            elif w.retiring_since is not None:
                bound = runner.graceful_timeout
                if self._stop_deadline is not None:
                    bound = min(bound, self._stop_deadline - w.retiring_since)
                if now - w.retiring_since > bound:
                    _kill(w.pid, signal.SIGKILL)

    # -- news from the zygote -------------------------------------------------------------

    def _from_zygote(self) -> None:
        try:
            messages = self.zygote.receive()
        except EOFError:
            return  # _check_zygote restarts it
        for m in messages:
            if isinstance(m, Spawned):
                self._on_spawned(m)
            elif isinstance(m, Exited):
                self._on_exited(m)

    def _on_spawned(self, m: Spawned) -> None:
        w = self._by_slot.pop(m.slot, None)
        if w is None:
            return  # of a zygote that died meanwhile
        self._unreported -= 1
        w.pid = m.pid
        self.by_pid[m.pid] = w
        if w.retiring_since is not None:
            _kill(w.pid, signal.SIGTERM)

    def _on_exited(self, m: Exited) -> None:
        w = self.by_pid.pop(m.pid, None)
        if w is None:
            return
        pool = w.pool
        self._dirty.add(pool.name)
        booted = self.slots.get(w.slot)[1] == 1
        if self.status is not None and not pool.removed:
            self.status.monitor(pool).worker_gone(w.slot)
        self.slots.set(w.slot, 0.0, 0)
        self._free_slots.append(w.slot)
        del pool.workers[w.slot]
        if self.activity.get(w.slot)[1]:
            pool.uses_fork = True
        code = os.waitstatus_to_exitcode(m.status)
        now = time.monotonic()
        if w.retiring_since is not None or pool.removed:
            return
        if not booted:
            pool.failures += 1
            delay = min(MAX_BACKOFF, 2.0 ** (pool.failures - 1))
            pool.backoff_until = now + delay
            log.error("site %s: a worker failed to boot (exit %d); retrying in %g s",
                      pool.name, code, delay)
            return
        if w.killed_for_deadline or code == 0:
            return  # a deadline kill is the request's fault; 0 is a recycle
        pool.crashes.append(now)
        while pool.crashes and now - pool.crashes[0] > CRASH_WINDOW:
            pool.crashes.popleft()
        log.error("site %s: worker %d died (%s)", pool.name, m.pid,
                  f"signal {-code}" if code < 0 else f"exit {code}")
        if len(pool.crashes) >= CRASHES_TO_PAUSE:
            pool.failures += 1
            delay = min(MAX_BACKOFF, 2.0 ** (pool.failures - 1))
            pool.backoff_until = now + delay
            pool.crashes.clear()
            log.error("site %s: workers keep crashing (%d in %g s); pausing it for %g s",
                      pool.name, CRASHES_TO_PAUSE, CRASH_WINDOW, delay)

    def _check_zygote(self) -> None:
        """The zygote runs no site code, so it should never die; if it does, its workers die
        with it: forget them and start a new one."""
        try:
            pid, status = os.waitpid(self.zygote.pid, os.WNOHANG)
        except ChildProcessError:
            pid, status = self.zygote.pid, 0
        if pid == 0:
            return
        log.error("the zygote died (%s); starting a new one",
                  os.waitstatus_to_exitcode(status))
        assert self._epoll is not None and self.zygote.sock is not None
        self._epoll.unregister(self.zygote.sock.fileno())
        self.zygote.sock.close()
        self.zygote.sock, self.zygote.pid = None, -1
        for pool in self._all_pools():
            for w in pool.workers.values():
                self.slots.set(w.slot, 0.0, 0)
            pool.workers.clear()
        self.by_pid.clear()
        self._by_slot.clear()
        self._unreported = 0
        self._free_slots = list(range(self.capacity - 1, -1, -1))
        if self._stop_deadline is None:
            self.zygote.start()
            assert self.zygote.sock is not None
            self._epoll.register(self.zygote.sock.fileno(), select.EPOLLIN)

    # -- watching sockets ------------------------------------------------------------------

    def _watch(self, pool: SitePool, now: float, full: bool) -> None:
        """Watch a site's socket while a waiting connection there would start a worker (none
        free, below its limit, not backing off, the host below its cap): a socket watched
        otherwise would be readable again and again while its worker boots or takes it."""
        if pool.listener is None:
            return
        fd = pool.listener.fileno()
        view = self._view(pool, now)
        wanted = (not full and now >= pool.backoff_until and view.booting == 0 and not view.idle
                  and view.live < pool.spec.max_workers)
        if wanted and fd not in self._watched:
            assert self._epoll is not None
            self._epoll.register(fd, select.EPOLLIN)
            self._watched[fd] = pool
        elif not wanted:
            self._unwatch(fd)

    def _log_total_reached(self, now: float) -> None:
        """Nobody may start a worker, so no socket is watched: look for a waiting connection
        now and then, to say so in the log (at most once a minute)."""
        if now - self._total_logged < LIMIT_LOG_EVERY or now - self._total_checked < 1.0:
            return
        self._total_checked = now
        for pool in self.pools.values():
            view = self._view(pool, now)
            if (pool.listener is not None and not view.idle and view.booting == 0
                    and view.live < pool.spec.max_workers and _readable(pool.listener)):
                self._total_logged = now
                log.warning("host reached max_workers_total (%d): site %s waits",
                            self.plan.settings.max_workers_total, pool.name)
                return

    def _watch_status(self) -> None:
        """Epoll follows the status server's sockets: its listener and open connections."""
        if self.status is None or self._epoll is None:
            return
        now = set(self.status.server.fds())
        zygote = self.zygote.sock.fileno() if self.zygote.sock is not None else -1
        for fd in self._status_fds - now:
            if fd in self._watched or fd == zygote:
                continue  # a closed connection's number, reused by a site's socket
            try:
                self._epoll.unregister(fd)
            except (OSError, ValueError):
                pass  # closed already: epoll forgot it
        for fd in now:
            # Every time: a connection closed and another accepted in one step may share
            # a number, and closing took the old one out of epoll.
            try:
                self._epoll.register(fd, select.EPOLLIN)
            except FileExistsError:
                pass
        self._status_fds = now

    def _unwatch(self, fd: int) -> None:
        if self._watched.pop(fd, None) is not None and self._epoll is not None:
            self._epoll.unregister(fd)

    # -- reload -------------------------------------------------------------------------------

    def reload(self, now: float) -> None:
        """Re-read the configuration. A broken one changes nothing that runs."""
        notify("RELOADING=1")
        try:
            plan = load(self.config_path)
        except ConfigError as exc:
            for line in str(exc).splitlines():
                log.error("SIGHUP: %s", line)
            log.error("SIGHUP: configuration not reloaded; everything runs as before")
            notify("READY=1")
            return
        if plan.settings.max_workers_total > self.capacity:
            log.warning("SIGHUP: max_workers_total above %d takes a restart; %d until then",
                        self.capacity, self.capacity)
        self.plan = HostPlan(_capped(plan, self.capacity), plan.sites, plan.preload)
        for name in [n for n in self.pools if n not in plan.sites]:
            pool = self.pools.pop(name)
            log.info("SIGHUP: site %s removed; its workers finish their requests", name)
            pool.removed = True
            self._close_listener(pool)
            for w in pool.workers.values():
                self._retire(w, now)
            self.draining.append(pool)
        for name, spec in plan.sites.items():
            pool_ = self.pools.get(name)
            if pool_ is None:
                log.info("SIGHUP: site %s added", name)
                self._start_site(spec)
            elif pool_.spec != spec:
                log.info("SIGHUP: site %s changed; replacing its workers", name)
                old_listen = pool_.spec.runner.listen
                for w in pool_.workers.values():
                    self._retire(w, now)
                if pool_.listener is None or spec.runner.listen != old_listen \
                        or spec.runner.socket_mode != pool_.spec.runner.socket_mode:
                    self._close_listener(pool_)
                    old = self.pools.pop(name)
                    old.removed = True
                    self.draining.append(old)
                    self._start_site(spec)
                    # A publish window still open holds for the new pool's workers too.
                    new = self.pools[name]
                    new.noticed_at, new.notices = old.noticed_at, old.notices
                else:
                    pool_.spec = spec
                    pool_.failures, pool_.backoff_until = 0, 0.0
                    self._active.add(name)
        self.notices.sites(plan.sites.values())
        if self.status is not None:
            self.status.sites(self.pools.values())
        notify("READY=1")


def _capped(plan: HostPlan, capacity: int) -> HostSettings:
    s = plan.settings
    return dataclasses.replace(s, max_workers_total=min(s.max_workers_total, capacity))


def _readable(sock: socket.socket) -> bool:
    p = select.poll()
    p.register(sock.fileno(), select.POLLIN)
    return bool(p.poll(0))


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _drain(fd: int) -> None:
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        pass


def _raise_fd_limit() -> None:
    """A listening socket per site: a thousand sites need more than the usual 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def host(config_path: Path, level: int = logging.INFO) -> int:
    """`cgirt host`: load, then run until stopped."""
    plan = load(config_path)
    if plan.settings.log_file:
        setup_runner_logging(level, plan.settings.log_file)
    return HostMaster(config_path, plan).run()
