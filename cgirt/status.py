"""A runner's status, as PHP-FPM's status page has it: the model, its formats, and the client.

A status is a list of pools (one per site), so that a master serving many sites can answer
with all of them at once; a `cgirt serve` runner has one. Formats: text (PHP-FPM's layout),
JSON, OpenMetrics 1.0, and a small HTML page that refreshes itself from the JSON.

The server side is in runner/statusserver.py; `fetch` is what `cgirt status` uses.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from dataclasses import dataclass
from typing import Any, Sequence
from urllib.parse import quote

from .errors import CgirtError, ExitStatus

FORMATS = ("text", "json", "openmetrics", "html")
CONTENT_TYPES = {
    "text": "text/plain; charset=utf-8",
    "json": "application/json",
    "openmetrics": "application/openmetrics-text; version=1.0.0; charset=utf-8",
    "html": "text/html; charset=utf-8",
}


class StatusUnavailable(CgirtError):
    """No status answered at the address; the message says where it was asked."""

    exit_status = ExitStatus.CANNOT_START


@dataclass(frozen=True)
class WorkerStatus:
    pid: int
    state: str  # Starting, Idle, Running, Retiring
    started: float  # epoch seconds
    requests: int
    method: str  # of the current request, or the last one when idle
    uri: str
    script: str
    duration: float  # seconds: of the current request so far, or of the last one when idle
    last_cpu: float  # seconds of CPU the worker used for its last finished request
    peak_rss_kib: int  # the worker's peak resident size at the end of its last request


@dataclass(frozen=True)
class PoolStatus:
    pool: str
    process_manager: str
    start_time: float  # epoch seconds
    accepted: int  # requests the pool's workers have started
    listen_queue: int | None  # connections waiting to be accepted now (None: cannot tell)
    max_listen_queue: int  # the most seen waiting since start
    listen_queue_len: int | None  # the listening socket's backlog
    idle: int
    active: int
    total: int
    max_active: int
    max_children_reached: int
    slow_requests: int
    workers: tuple[WorkerStatus, ...] = ()


def worker_state(booted: bool, running: bool, retiring: bool) -> str:
    """A worker's state as PHP-FPM names it, from what its slot and the master know."""
    if not booted:
        return "Starting"
    if running:
        return "Running"
    return "Retiring" if retiring else "Idle"


def summarise(pool: str, process_manager: str, start_time: float, retired_requests: int,
              queue: tuple[int, int] | None, max_listen_queue: int, max_active: int,
              max_children_reached: int, slow_requests: int,
              workers: Sequence[WorkerStatus]) -> PoolStatus:
    """A pool's status from its workers' (the counts derived here, the maxima kept by the
    caller); `accepted` counts the requests of workers that are gone too."""
    return PoolStatus(
        pool=pool, process_manager=process_manager, start_time=start_time,
        accepted=retired_requests + sum(w.requests for w in workers),
        listen_queue=queue[0] if queue else None, max_listen_queue=max_listen_queue,
        listen_queue_len=queue[1] if queue else None,
        idle=sum(1 for w in workers if w.state == "Idle"),
        active=sum(1 for w in workers if w.state == "Running"), total=len(workers),
        max_active=max_active, max_children_reached=max_children_reached,
        slow_requests=slow_requests, workers=tuple(workers),
    )


def render(pools: Sequence[PoolStatus], fmt: str, full: bool, now: float | None = None) -> bytes:
    now = time.time() if now is None else now
    if fmt == "json":
        return _json(pools, full, now).encode()
    if fmt == "openmetrics":
        return _openmetrics(pools, full, now).encode()
    if fmt == "html":
        return HTML_PAGE.encode()
    return _text(pools, full, now).encode()


# -- text and JSON: PHP-FPM's field names, where the meaning is the same ------------------------

def _pool_fields(p: PoolStatus, now: float) -> dict[str, Any]:
    return {
        "pool": p.pool,
        "process manager": p.process_manager,
        "start time": int(p.start_time),
        "start since": int(now - p.start_time),
        "accepted conn": p.accepted,
        "listen queue": p.listen_queue,
        "max listen queue": p.max_listen_queue,
        "listen queue len": p.listen_queue_len,
        "idle processes": p.idle,
        "active processes": p.active,
        "total processes": p.total,
        "max active processes": p.max_active,
        "max children reached": p.max_children_reached,
        "slow requests": p.slow_requests,
    }


def _worker_fields(w: WorkerStatus, now: float) -> dict[str, Any]:
    return {
        "pid": w.pid,
        "state": w.state,
        "start time": int(w.started),
        "start since": int(now - w.started),
        "requests": w.requests,
        "request duration": int(w.duration * 1_000_000),  # microseconds, as PHP-FPM
        "request method": w.method,
        "request URI": w.uri,
        "script": w.script,
        "last request cpu seconds": round(w.last_cpu, 6),
        "peak rss bytes": w.peak_rss_kib * 1024,
    }


def _json(pools: Sequence[PoolStatus], full: bool, now: float) -> str:
    out = []
    for p in pools:
        fields = _pool_fields(p, now)
        if full:
            fields["processes"] = [_worker_fields(w, now) for w in p.workers]
        out.append(fields)
    return json.dumps({"pools": out}, indent=1) + "\n"


def _text(pools: Sequence[PoolStatus], full: bool, now: float) -> str:
    lines: list[str] = []
    for p in pools:
        if lines:
            lines.append("")
        fields = _pool_fields(p, now)
        fields["start time"] = _clock(p.start_time)
        lines += [f"{k + ':':<22}{'-' if v is None else v}" for k, v in fields.items()]
        for w in p.workers if full else ():
            wf = _worker_fields(w, now)
            wf["start time"] = _clock(w.started)
            lines += ["", "*" * 24] + [f"{k + ':':<26}{v}" for k, v in wf.items()]
    return "\n".join(lines) + "\n"


def _clock(t: float) -> str:
    return time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(t))


# -- OpenMetrics ------------------------------------------------------------------------------

_POOL_METRICS = (  # name, type, help, value
    ("cgirt_start_time_seconds", "gauge", "when the pool's master started (epoch)",
     lambda p: p.start_time),
    ("cgirt_accepted_connections", "counter", "requests the pool's workers have started",
     lambda p: p.accepted),
    ("cgirt_listen_queue", "gauge", "connections waiting to be accepted", lambda p: p.listen_queue),
    ("cgirt_max_listen_queue", "gauge", "the most connections seen waiting since start",
     lambda p: p.max_listen_queue),
    ("cgirt_listen_queue_length", "gauge", "the listening socket's backlog",
     lambda p: p.listen_queue_len),
    ("cgirt_idle_processes", "gauge", "workers waiting for a request", lambda p: p.idle),
    ("cgirt_active_processes", "gauge", "workers serving a request", lambda p: p.active),
    ("cgirt_total_processes", "gauge", "workers", lambda p: p.total),
    ("cgirt_max_active_processes", "gauge", "the most workers seen active at once",
     lambda p: p.max_active),
    ("cgirt_max_children_reached", "counter", "times every worker was seen busy",
     lambda p: p.max_children_reached),
    ("cgirt_slow_requests", "counter", "requests that ran past slowlog_timeout",
     lambda p: p.slow_requests),
)

_WORKER_METRICS = (
    ("cgirt_worker_requests", "counter", "requests the worker has started", lambda w: w.requests),
    ("cgirt_worker_busy", "gauge", "1 while the worker serves a request",
     lambda w: int(w.state == "Running")),
    ("cgirt_worker_request_duration_seconds", "gauge",
     "the current request's age, or the last request's duration", lambda w: w.duration),
    ("cgirt_worker_last_request_cpu_seconds", "gauge", "CPU of the worker's last request",
     lambda w: w.last_cpu),
    ("cgirt_worker_peak_rss_bytes", "gauge", "the worker's peak resident size",
     lambda w: w.peak_rss_kib * 1024),
)


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _openmetrics(pools: Sequence[PoolStatus], full: bool, now: float) -> str:
    lines: list[str] = []
    families: list[tuple[Any, ...]] = list(_POOL_METRICS)
    if full:
        families += _WORKER_METRICS
    for name, kind, help_, value in families:
        lines += [f"# TYPE {name} {kind}", f"# HELP {name} {help_}"]
        sample = name + "_total" if kind == "counter" else name
        for p in pools:
            pool = f'pool="{_label(p.pool)}"'
            if name.startswith("cgirt_worker_"):
                for w in p.workers:
                    lines.append(f'{sample}{{{pool},pid="{w.pid}"}} {value(w)}')
            elif value(p) is not None:
                lines.append(f"{sample}{{{pool}}} {value(p)}")
    return "\n".join(lines) + "\n# EOF\n"


# -- the HTML page: it asks for the JSON every second and redraws itself --------------------------

HTML_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>cgirt status</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; }
table { border-collapse: collapse; margin-bottom: 1.5em; }
td, th { border: 1px solid #ccc; padding: 2px 8px; text-align: left; }
th { background: #f3f3f3; } .Running { background: #fff3c4; }
</style></head>
<body><h1>cgirt status</h1><p id="updated">loading...</p><div id="pools"></div>
<script>
"use strict";
function esc(s) { return String(s === null ? "-" : s).replace(/[&<>"]/g,
  c => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})[c]); }
function slug(k) { return k.replace(/ /g, "-"); }
function show(k, v) { return esc(k === "start time" ? new Date(v * 1000).toLocaleString() : v); }
async function refresh() {
  try {
    const r = await fetch("?json&full", {cache: "no-store"});
    const data = await r.json();
    let out = "";
    for (const pool of data.pools) {
      out += "<h2>" + esc(pool.pool) + "</h2><table class=pool>";
      for (const [k, v] of Object.entries(pool)) {
        if (k !== "processes") out += "<tr><th>" + esc(k) + "</th><td id='" + slug(k) + "'>" + esc(v) + "</td></tr>";
      }
      out += "</table><table class=processes><tr>";
      const cols = pool.processes.length ? Object.keys(pool.processes[0]) : [];
      for (const k of cols) out += "<th>" + esc(k) + "</th>";
      out += "</tr>";
      for (const w of pool.processes) {
        out += "<tr class='" + esc(w.state) + "'>";
        for (const k of cols) out += "<td>" + show(k, w[k]) + "</td>";
        out += "</tr>";
      }
      out += "</table>";
    }
    document.getElementById("pools").innerHTML = out;
    document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (e) {
    document.getElementById("updated").textContent = "cannot reach the status: " + e;
  }
}
refresh();
setInterval(refresh, 1000);
</script></body></html>
"""


# -- the client -------------------------------------------------------------------------------

def fetch(address: str, fmt: str = "text", full: bool = False, path: str = "/status",
          timeout: float = 10.0, pool: str | None = None) -> bytes:
    """The status body from a runner's status address (`unix:PATH` or `HOST:PORT`); `pool`:
    only that pool's (a host's site)."""
    words = [w for w in (fmt if fmt != "text" else "", "full" if full else "",
                         f"pool={quote(pool, safe='')}" if pool else "") if w]
    target = path + ("?" + "&".join(words) if words else "")
    try:
        if address.startswith("unix:"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(address[5:])
        else:
            host, _, port = address.rpartition(":")
            sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout)
    except (OSError, ValueError) as exc:
        raise StatusUnavailable(f"no status at {address} ({getattr(exc, 'strerror', None) or exc}): "
                                "is the runner running, with this status address?") from None
    with sock:
        try:
            sock.sendall(f"GET {target} HTTP/1.0\r\nHost: cgirt\r\n\r\n".encode())
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except OSError as exc:
            raise StatusUnavailable(f"the status at {address} did not answer ({exc})") from None
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1")
    if not status_line.startswith("HTTP/1.0 200"):
        why = body.decode("utf-8", "replace").strip().splitlines()[:1]
        raise StatusUnavailable(f"the status at {address} answered {status_line!r}"
                                + (f": {why[0]}" if why else ""))
    return body


def pools_from_json(body: bytes) -> list[PoolStatus]:
    """The pools of a `?json&full` answer: what `_json` wrote, read back."""
    pools = []
    for p in json.loads(body)["pools"]:
        workers = tuple(WorkerStatus(
            pid=w["pid"], state=w["state"], started=float(w["start time"]),
            requests=w["requests"], method=w["request method"], uri=w["request URI"],
            script=w["script"], duration=w["request duration"] / 1_000_000,
            last_cpu=w["last request cpu seconds"], peak_rss_kib=w["peak rss bytes"] // 1024,
        ) for w in p.get("processes", ()))
        pools.append(PoolStatus(
            pool=p["pool"], process_manager=p["process manager"],
            start_time=float(p["start time"]), accepted=p["accepted conn"],
            listen_queue=p["listen queue"], max_listen_queue=p["max listen queue"],
            listen_queue_len=p["listen queue len"], idle=p["idle processes"],
            active=p["active processes"], total=p["total processes"],
            max_active=p["max active processes"],
            max_children_reached=p["max children reached"], slow_requests=p["slow requests"],
            workers=workers))
    return pools


def gather(addresses: Sequence[str], fmt: str, full: bool) -> tuple[bytes, list[str]]:
    """The status of several runner hosts as one, each pool named POOL@ADDRESS; and the
    hosts that did not answer, each with why."""
    pools: list[PoolStatus] = []
    missing: list[str] = []
    for address in addresses:
        try:
            body = fetch(address, "json", True)
            pools += [dataclasses.replace(p, pool=f"{p.pool}@{address}")
                      for p in pools_from_json(body)]
        except StatusUnavailable as exc:
            missing.append(str(exc))
        except (ValueError, KeyError, TypeError) as exc:
            missing.append(f"the status at {address} is not cgirt's ({exc})")
    return render(pools, fmt, full), missing
