"""Processes the benchmark starts (own session, stopped by PID and process group) and what
/proc says about a process tree: CPU time and resident memory."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

_TICK = os.sysconf("SC_CLK_TCK")


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.005
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)  # polling interval of a deadline wait
        delay = min(delay * 2, 0.1)


class Proc:
    """A server process in its own session; `stop()` ends it and everything in its group."""

    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, cgroup: "CpuGroup | None" = None) -> None:
        self.argv = list(argv)
        self.log = log
        self._log_file = open(log, "ab")
        # Joined before exec, so no child the server forks can escape the accounting.
        join = cgroup.join_self if cgroup is not None else None
        self.popen = subprocess.Popen(self.argv, stdout=self._log_file, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True,
                                      env=env, cwd=cwd, preexec_fn=join)
        self.pid = self.popen.pid
        self.cgroup = cgroup

    def cpu_seconds(self) -> float:
        """CPU used so far by this process and everything it started."""
        if self.cgroup is not None:
            return self.cgroup.cpu_seconds()
        return cpu_seconds([self.pid])[0]

    def alive(self) -> bool:
        return self.popen.poll() is None

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")[-4000:]

    def stop(self, timeout: float = 5.0) -> None:
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(timeout=timeout)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        try:
            os.killpg(self.pid, signal.SIGKILL)  # our own group: the session we started
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.popen.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._log_file.close()


@dataclass
class _Stat:
    ppid: int
    cpu_ticks: int  # utime + stime + cutime + cstime: children that were reaped count too
    rss_pages: int


def _read_all() -> dict[int, _Stat]:
    table = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw.rsplit(b")", 1)[1].split()
        if fields[0] == b"Z":
            continue
        # fields[0] is field 3 (state): utime is field 14 → index 11.
        table[int(entry.name)] = _Stat(int(fields[1]), sum(int(x) for x in fields[11:15]),
                                       int(fields[21]))
    return table


def tree(root: int, table: dict[int, _Stat] | None = None) -> list[int]:
    """`root` and all its live descendants."""
    table = _read_all() if table is None else table
    kids: dict[int, list[int]] = {}
    for pid, st in table.items():
        kids.setdefault(st.ppid, []).append(pid)
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        if pid in table:
            out.append(pid)
        todo.extend(kids.get(pid, ()))
    return out


def cpu_seconds(roots: Sequence[int]) -> list[float]:
    """CPU seconds used so far by each root's process tree (one /proc scan for all)."""
    table = _read_all()
    return [sum(table[p].cpu_ticks for p in tree(r, table)) / _TICK for r in roots]


def worker_rss_mib(root: int) -> list[float]:
    """Resident memory of the workers: the root's descendants, or the root if it has none."""
    table = _read_all()
    pids = tree(root, table)
    workers = [p for p in pids if p != root] or pids
    page = os.sysconf("SC_PAGE_SIZE")
    return [table[p].rss_pages * page / 2**20 for p in workers]


_CGROUP_BASES = (  # (directory, counter file, unit in seconds)
    ("/sys/fs/cgroup/cpuacct", "cpuacct.usage", 1e-9),  # cgroup v1
    ("/sys/fs/cgroup", "cpu.stat", 1e-6),  # cgroup v2 alone
    ("/sys/fs/cgroup/unified", "cpu.stat", 1e-6),  # v2 beside v1 (hybrid)
)


class CpuGroup:
    """A cgroup of our own holding one server's processes: its CPU counter includes every
    descendant, also those reaped by nobody who reports them (fcgiwrap ignores SIGCHLD, so
    classic CGI's interpreters never show up in its /proc counters)."""

    def __init__(self, path: Path, counter: str, unit: float) -> None:
        self.path, self._counter, self._unit = path, path / counter, unit

    @classmethod
    def make(cls, name: str) -> "CpuGroup | None":
        """A new group, or None where cgroups cannot be made (not root, read-only)."""
        for base, counter, unit in _CGROUP_BASES:
            path = Path(base) / f"cgirt-bench-{os.getpid()}-{name}"
            try:
                path.mkdir()
            except OSError:
                continue
            group = cls(path, counter, unit)
            try:
                group.cpu_seconds()
                return group
            except (OSError, ValueError):
                group.remove()
        return None

    def join_self(self) -> None:
        with open(self.path / "cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    def cpu_seconds(self) -> float:
        text = self._counter.read_text()
        if self._counter.name == "cpu.stat":
            text = next(line.split()[1] for line in text.splitlines() if line.startswith("usage_usec"))
        return int(text) * self._unit

    def remove(self) -> None:
        for _ in range(50):  # the kernel frees a group only when its last process is gone
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)  # processes killed a moment ago are still exiting
