"""One FastCGI request → dispatch → cache → sandbox → response; errors → HTTP statuses here.

This is the only place where the runner's typed errors become HTTP responses.
"""

from __future__ import annotations

import html
import importlib
import importlib.util
import logging
import os
import resource
import signal
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from .. import site as site_layout
from .cache import ScriptCache, SiteModules, install_site_loader, signature
from .classic import ExecExecutor
from ..config import RunnerConfig
from .dispatch import CgiRoot, Dispatcher, Target
from .environ import build_environ, coerce_c_locale, redirect_environ, search_words
from ..errors import (BadRequest, HttpError, PayloadTooLarge, RedirectLoop, RequestTimeout,
                      ScriptFailed, StartupError)
from .executors import Executor, Work
from ..fastcgi.server import FastCGIRequest, io_timeout
from .forkmode import ForkExecutor, ForkUse, LazyForkServer
from . import freshness
from ..log import ErrorLog
from ..logfiles import LogFile, shared_counter
from .accesslog import AccessLog
from .modes import ModePolicy
from .persistent import PersistentExecutor
from .response import ResponseParser
from .slowlog import SLOW_SIGNAL, SlowLog
from .supervisor import die_with_parent

log = logging.getLogger("cgirt.error")
MAX_REDIRECTS = 10
# The runner's own script that fork mode's template runs once (`CgiApp._warm_fork`).
WARM_UP_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "warm-up.cgi")


class CgiApp:
    """Built in the master (no side effects); `child_init` runs in each worker."""

    def __init__(self, config: RunnerConfig) -> None:
        self.config = config
        self.site = config.site
        self.dispatcher = Dispatcher(config.site, config.cgi_roots)
        self.modes = ModePolicy(config.mode, config.allowed_modes)
        self.scripts = ScriptCache()
        self.modules = SiteModules(os.path.realpath(config.site), config.allow_keep_modules,
                                   lambda path, text: self.errlog.line(path, text))
        self.log_counter = shared_counter()
        host = config.host_name
        self.errlog = ErrorLog(site_layout.error_log_path(config.site, host), config.site,
                               self.log_counter, config.log_max_size)
        self.access = AccessLog(LogFile(site_layout.access_log_path(config.site, host),
                                        self.log_counter, config.log_max_size,
                                        anchor=config.site)
                                ) if config.access_log else None
        self._mode = "-"
        self.slowlog = SlowLog(site_layout.slow_log_path(config.site, host), config.site,
                               self.log_counter, config.log_max_size)
        self.document_root = str(config.site / site_layout.DOCUMENT_ROOT)
        self.ran_script = False  # in this worker, in-process: it is no longer clean
        self._fork_use = ForkUse()  # shared by every worker: here, before the first fork
        self.forks = LazyForkServer(config.timeout, config.kill_grace, io_timeout(config),
                                    eager=self._fork_eager, clean=lambda: not self.ran_script,
                                    used=self._fork_used)
        self.persistent = PersistentExecutor(self.scripts, self.modules, self.errlog, self._finish)
        # The execution modes by name (config.MODES); the mode policy picks one per script.
        self.executors: dict[str, Executor] = {
            "persistent": self.persistent,
            "fork": ForkExecutor(self.forks, self.persistent, self._error_page),
            "exec": ExecExecutor(self.errlog, self._finish),
        }
        self._generation_path = str(site_layout.generation_path(config.site))
        self._generation: Any = None
        self.publishes = freshness.PublishEpoch()  # bumped by the master on a publish notice
        self._publish_seen = 0
        self._current: FastCGIRequest | None = None
        self._started = 0.0

    def child_init(self) -> None:
        if self.config.memory_limit:
            limit = self.config.memory_limit
            used = _address_space_bytes()
            if used is not None and used >= limit:
                # Python 3.13 can boot a little further on memory it already holds, then
                # fails on the first request: make it a boot error, every time.
                raise MemoryError(f"memory_limit {limit // (1024 * 1024)}M is below what "
                                  f"a worker already uses ({used // (1024 * 1024)}M)")
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        self.errlog.open()
        self.slowlog.open()
        if self.access is not None:
            self.access.open()
        drop_to_site_owner(self.site)
        preload(self.config.preload, self.modules.site_root)
        install_site_loader(self.modules)
        signal.signal(signal.SIGALRM, self._on_deadline)
        signal.signal(SLOW_SIGNAL, self._on_slow)  # before the fork template: its children too
        self.persistent.start()
        # Clean: no script has run yet. The template itself only where fork mode is used.
        self.forks.start(self._serve_forked, self._prepare_fork, self._warm_fork)

    def _fork_eager(self) -> bool:
        """At boot: whether this worker makes its fork-mode template now, while clean."""
        return self.config.mode == "fork" or self._fork_use.seen()

    def _fork_used(self) -> None:
        """A worker met its first fork-mode request: the next workers start their template
        at boot. Here all the runner's workers share one byte, mapped in the master."""
        self._fork_use.note()

    # -- the request --------------------------------------------------------------------

    def __call__(self, req: FastCGIRequest) -> None:
        # The deadline is armed before the request becomes current, so a timer left from the
        # last request can never fire on this one; it is not disarmed afterwards (a system
        # call per request): with no current request, it only wakes the worker once.
        signal.setitimer(signal.ITIMER_REAL, self.config.timeout)
        self._started = time.monotonic()
        self._current = req
        started = time.time()
        self._mode = "-"
        access = self.access
        request = self.errlog.request = AccessLog.request_line(req.params)
        try:
            self._check_generation()
            self.guarded(req, "-", lambda: self._dispatch(req))
        finally:
            self._current = None
            if access is not None:
                try:
                    req.end()  # the client has its response before the line is written
                except OSError:
                    pass
                access.write(req.params, started, time.time() - started, req.status,
                             req.sent_bytes - req.head_bytes, req.sent_bytes, self._mode, request)
            self.errlog.request = "-"
            if self.errlog.file.stale or (access is not None and access.file.stale):
                req.conn.control.recycle_after_request()  # a new worker opens the new files

    def _dispatch(self, req: FastCGIRequest) -> None:
        target = self.dispatcher.resolve(req.params)
        self._serve(req, req.params, target, self._body_length(req), {}, 0)

    def guarded(self, req: FastCGIRequest, script: str, work: Callable[[], None]) -> None:
        """Run `work`; a typed error becomes its HTTP status and an error log line."""
        try:
            work()
        except RequestTimeout:
            self.errlog.line(script, "script timed out; worker will be replaced")
            self._error_page(req, RequestTimeout())
        except HttpError as exc:
            if exc.log:
                self.errlog.line(exc.script or script, exc.log)
            self._error_page(req, exc)

    def _body_length(self, req: FastCGIRequest) -> int:
        raw = req.params.get("CONTENT_LENGTH", "") or "0"
        if not raw.isdigit():
            raise BadRequest(log=f"invalid CONTENT_LENGTH {raw!r}")
        length = int(raw)
        if self.config.max_body and length > self.config.max_body:
            raise PayloadTooLarge(log=f"request body of {length} bytes is over the limit")
        return length

    def _serve(self, req: FastCGIRequest, params: Mapping[str, str], target: Target,
               body_length: int, extra_env: Mapping[str, str], depth: int,
               restore: bool = True) -> None:
        env = build_environ(params, target, self.document_root, self.config.script_path_env)
        env.update(extra_env)
        mode = self._mode = self.modes.mode_for(target.path, target.root.path)
        if mode != "exec":
            coerce_c_locale(env)
        work = Work(target, env, search_words(env["QUERY_STRING"]), depth, body_length, restore)
        if mode == "persistent":
            self.ran_script = True
        self.executors[mode].execute(req, work)

    def _prepare_fork(self, path: str) -> None:
        """In the template, before each fork: what every child would otherwise redo, done once
        and inherited: the compiled script and whether it uses descriptors by number, and the
        module censuses (else each child walks all of sys.modules, copying every page it
        touches). None runs any script code."""
        self.modules.collect()
        self.persistent.watch_new_modules()
        try:
            self.persistent.descriptors.by_number(self.scripts.get(path))
        except (SyntaxError, OSError):
            pass  # the child meets the same error and reports it

    def _warm_fork(self, answer: Callable[[Work], None]) -> None:
        """In the template, once before its first fork: a GET of the runner's own warm-up
        script (never a site's), answered as a child answers (forkmode._warm_up)."""
        try:
            st = os.stat(WARM_UP_SCRIPT)
            with open(WARM_UP_SCRIPT, "rb"):
                pass
        except OSError:
            # Installed where the site's owner may not read (root's umask 077): the children
            # only do that first-time work themselves; the site's error log is not told of
            # the runner's own script (it would be, ten times per template).
            return
        root = CgiRoot("/.cgirt-warm-up", os.path.dirname(WARM_UP_SCRIPT))
        target = Target(WARM_UP_SCRIPT, root.url + "/warm-up.cgi", "", root, st, WARM_UP_SCRIPT)
        params = {"REQUEST_METHOD": "GET", "QUERY_STRING": "", "SCRIPT_NAME": target.script_name,
                  "REQUEST_URI": target.script_name, "SERVER_PROTOCOL": "HTTP/1.1",
                  "SERVER_NAME": "localhost", "SERVER_PORT": "80", "REMOTE_ADDR": "127.0.0.1"}
        env = build_environ(params, target, self.document_root, self.config.script_path_env)
        coerce_c_locale(env)
        try:
            answer(Work(target, env, [], 0, 0))
        finally:
            self.scripts.clear()  # the template's cache holds the site's scripts only
            self._current = None
            self.errlog.request = "-"

    def _serve_forked(self, req: FastCGIRequest, work: Work, last: bool) -> None:
        """Fork mode, in the request's own child of the template (`last`: it exits after),
        or in the template for its warm-up."""
        # The child's exit undoes everything: putting the worker's state back after the
        # script would only copy more of the template's pages (bench/forkcost.py).
        work.restore = not last  # this process's own copy of the request's Work
        self._started = time.monotonic()
        self._current = req
        self.errlog.request = AccessLog.request_line(req.params)
        self.guarded(req, work.target.path, lambda: self.persistent.execute(req, work))

    def _finish(self, req: FastCGIRequest, work: Work, parser: ResponseParser) -> None:
        outcome = parser.finish()
        if outcome.kind == "sent":
            return
        if outcome.kind == "redirect":
            self._redirect(req, work, outcome.location)
            return
        raise ScriptFailed(log=outcome.message, script=work.target.path)

    def _redirect(self, req: FastCGIRequest, work: Work, location: str) -> None:
        """A local Location: run it in this site (as Apache does), else send the client there."""
        if work.depth >= MAX_REDIRECTS:
            raise RedirectLoop(log=f"more than {MAX_REDIRECTS} internal redirects")
        parts = urlsplit(location)
        try:
            new_target = self.dispatcher.resolve_url(parts.path)
        except HttpError:
            req.write(b"Status: 302 Found\r\nLocation: %s\r\n\r\n" % location.encode("latin-1"))
            return
        params = {k: v for k, v in req.params.items()
                  if k not in ("CONTENT_LENGTH", "CONTENT_TYPE", "SCRIPT_FILENAME", "PATH_INFO")}
        params.update(REQUEST_METHOD="GET", QUERY_STRING=parts.query, SCRIPT_NAME=parts.path,
                      REQUEST_URI=location)
        # In a fork-mode child, the redirect's script runs there too, and the child exits.
        self._serve(req, params, new_target, 0, redirect_environ(work.env, location),
                    work.depth + 1, work.restore)

    # -- around the request ---------------------------------------------------------

    def _check_generation(self) -> None:
        """Once per request: a publish by the gateway drops every site module at once."""
        try:
            sig: Any = signature(os.stat(self._generation_path))
        except OSError:
            sig = None
        if sig != self._generation:
            if self._generation is not None:
                self.modules.refresh(force=True)
            self._generation = sig
        epoch = self.publishes.read()
        if epoch != self._publish_seen:
            # Another host published: this host's mount may still show the old attributes,
            # so nothing remembered from them is trusted, and for a while stats ask the server.
            self._publish_seen = epoch
            freshness.strict_for(self.config.publish_window)
            self.scripts.clear()
            self.dispatcher.forget()
            self.modules.refresh(force=True)

    def _on_slow(self, signum: int, frame: Any) -> None:
        req = self._current
        if req is None:
            return  # it ended before the master's signal arrived
        child = self.forks.running_child()
        if child:
            os.kill(child, signum)  # fork mode: the script runs in that child
            return
        self.slowlog.write("slow request", frame, req.params, time.monotonic() - self._started)

    def _on_deadline(self, signum: int, frame: Any) -> None:
        req = self._current
        if req is None:
            return
        self.slowlog.write("timed out", frame, req.params, time.monotonic() - self._started)
        req.conn.control.recycle_after_request()
        self.persistent.descriptors.stop()  # a script's pump thread must not write along
        if not req.ended and not req.stdout_started and not req.conn.sending:
            try:
                self._error_page(req, RequestTimeout())
                req.end()
            except OSError:
                pass
        raise RequestTimeout()

    def _error_page(self, req: FastCGIRequest, exc: HttpError) -> None:
        if req.ended or req.stdout_started:
            return  # too late for a status: the response is cut short instead
        body = (
            f"<!DOCTYPE html>\n<html><head><title>{exc.status} {exc.reason}</title></head>"
            f"<body><h1>{html.escape(exc.reason)}</h1><p>{html.escape(_explain(exc))}</p>"
            "</body></html>\n"
        ).encode()
        head = (f"Status: {exc.status} {exc.reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        try:
            req.write(head + body)
        except OSError:
            pass


def preload(names: tuple[str, ...], site_root: str) -> None:
    """Import the admin's preload list, before any script runs. A module that would come
    from the site is left out: a site's modules are imported by its scripts, so that an edit
    reloads them. A module that cannot be imported costs only speed: a warning, no more."""
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            log.warning("preload: no module named %r", name)
            continue
        places = [spec.origin] if spec.origin else list(spec.submodule_search_locations or [])
        inside = [p for p in places if os.path.isabs(p)  # not "built-in" or "frozen"
                  and (os.path.realpath(p) + "/").startswith(site_root)]
        if inside:
            log.warning("preload: %r is the site's own module (%s): not preloaded", name, inside[0])
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # `import cgi` on 3.11, 3.12
                importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001 - any failure of someone else's module
            log.warning("preload: importing %r failed: %s", name, exc)


def _address_space_bytes() -> int | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * resource.getpagesize()
    except (OSError, ValueError, IndexError):
        return None  # not Linux: the limit applies, and the first allocation tells


def drop_to_site_owner(site: Path) -> None:
    """Started as root, a site's workers run as the site's owner, so one site cannot read
    another's files. A failed drop is a boot error, never silently ignored."""
    if os.geteuid() != 0:
        return
    st = os.stat(site)
    if st.st_uid == 0:
        return  # a root-owned site: nothing to separate from
    parent = os.getppid()
    os.setgroups([])
    os.setgid(st.st_gid)
    os.setuid(st.st_uid)
    if os.geteuid() != st.st_uid or os.getegid() != st.st_gid:
        raise PermissionError(f"could not become uid {st.st_uid}, gid {st.st_gid}")
    # The kernel clears the parent-death signal on a change of credentials: ask again, or
    # a SIGKILLed master leaves this worker behind. A parent gone before that is seen here.
    die_with_parent()
    if os.getppid() != parent:
        raise StartupError("the master exited while this worker dropped its privileges")


def _explain(exc: HttpError) -> str:
    if exc.status == 500:
        return ("The script failed or sent a malformed response. "
                "The site's error log (logs/error.log over FTP) says why.")
    if exc.status == 504:
        return "The script took too long to answer."
    return str(exc)
