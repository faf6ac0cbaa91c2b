"""Processes started by tests: own session, stopped by PID and process group, leak-checked."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Sequence

STARTED_GROUPS: set[int] = set()  # checked after every test: must all be gone
LONG_LIVED: set[int] = set()  # module-scoped servers, checked when their module ends


def wait_for(condition: Callable[[], object], timeout: float = 15.0, what: str = "condition") -> object:
    """Poll `condition` until it is truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.005
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)  # polling interval of a deadline wait, not synchronisation
        delay = min(delay * 2, 0.1)


def group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def running(pid: int) -> bool:
    """The process exists and is not a zombie (a dead child its parent has not reaped yet)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def children_of(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            kids.append(int(entry.name))
    return kids


class Proc:
    def __init__(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None,
                 cwd: Path | None = None, stdin: int | None = subprocess.DEVNULL,
                 pass_fds: Sequence[int] = (), long_lived: bool = False) -> None:
        self.log = log
        self._log_file = open(log, "ab")
        self.popen = subprocess.Popen(
            list(argv), stdout=self._log_file, stderr=subprocess.STDOUT, stdin=stdin,
            start_new_session=True, env=env, cwd=cwd, pass_fds=pass_fds,
        )
        self.pid = self.popen.pid
        (LONG_LIVED if long_lived else STARTED_GROUPS).add(self.pid)

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.popen.poll() is None

    def send_signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """Stop the process, then make sure nothing of its group survives."""
        code = None
        if self.alive():
            os.kill(self.pid, sig)
            try:
                code = self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        else:
            code = self.popen.returncode
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        if self.popen.poll() is None:
            self.popen.wait(timeout=5)
        wait_for(lambda: not group_members(self.pid), 5, f"process group {self.pid} to end")
        self._log_file.close()
        return code


# A stand-in process that notes each signal it takes in the file `signals` of its current
# folder, one at a time in the kernel's order (a Python handler can be interrupted by the
# next one's): pending together, the lower number is taken first. Run as `python -c
# SIGNAL_NOTER ARGS...` or from a file; its arguments are there only to be read from its
# command line (a stand-in whose argv says `cgirt serve --site ...`).
SIGNAL_NOTER = ("import signal\n"
                "wanted = {signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGWINCH}\n"
                "signal.pthread_sigmask(signal.SIG_BLOCK, wanted)\n"
                "print('ready', flush=True)\n"
                "while True:\n"
                "    number = signal.sigwaitinfo(wanted).si_signo\n"
                "    with open('signals', 'a') as f:\n"
                "        f.write(signal.Signals(number).name[3:] + '\\n')\n")


class SignalNoter(Proc):
    """SIGNAL_NOTER started by `argv` in `folder`; stopped and leak-checked as any Proc."""

    def __init__(self, folder: Path, argv: Sequence[str]) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        super().__init__(argv, folder / "noter.log", cwd=folder)
        wait_for(lambda: "ready" in self.output() or not self.alive(), 30, "the signal noter")
        assert self.alive(), self.output()

    def noted(self) -> list[str]:
        path = self.folder / "signals"
        return path.read_text().split() if path.exists() else []

    def settle(self) -> list[str]:
        """The signals noted, once every one sent before this call is: a SIGWINCH (28) is
        sent and waited for, taken after any HUP, USR1 or USR2 pending with it."""
        winches = self.noted().count("WINCH") + 1
        os.kill(self.pid, signal.SIGWINCH)
        wait_for(lambda: self.noted().count("WINCH") >= winches, 30, "SIGWINCH noted")
        return [name for name in self.noted() if name != "WINCH"]
