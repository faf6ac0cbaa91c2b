"""runnerproc: which processes count as a site's runner master, read from real /proc entries
of real processes (a stand-in `cgirt` program that only waits)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cgirt.errors import RunnerRefused
from cgirt.runnerproc import HOST, SERVE, cgirt_command, master_kind, runner_pid, signal_sites
from tests.support.procs import SIGNAL_NOTER, SignalNoter


@pytest.mark.parametrize("argv, expected", [
    (["/opt/cgirt/bin/python3", "/opt/cgirt/bin/cgirt", "serve", "--site", "/s"],
     ("serve", ["--site", "/s"])),
    (["python3", "-X", "utf8", "/opt/cgirt/bin/cgirt", "host", "--config", "c"],
     ("host", ["--config", "c"])),
    (["python3", "-u", "-m", "cgirt", "serve"], ("serve", [])),
    (["python3", "-mcgirt", "host"], ("host", [])),
    (["cgirt", "serve", "--site=/s"], ("serve", ["--site=/s"])),
    (["python3", "-c", "pass", "cgirt", "serve", "--site", "/s"], None),
    (["python3", "-m", "cgirt_evil", "serve"], None),
    (["python3", "/home/u/cgirt-tools/run.py", "serve"], None),
    (["python3", "-m", "ftp_gateway", "ftp"], None),
    (["python3", "-m", "cgirt"], None),
    ([], None),
])
def test_the_cgirt_subcommand_is_read_as_python_and_the_cli_read_it(
        argv: list[str], expected: tuple[str, list[str]] | None) -> None:
    assert cgirt_command(argv) == expected


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., int]]:
    """Start the stand-in `cgirt ARGS...` in `cwd`; each stopped by its pid at the end."""
    fake = tmp_path / "bin" / "cgirt"
    fake.parent.mkdir()
    fake.write_text("import sys, time\nprint('ready', flush=True)\ntime.sleep(600)\n")
    started: list[subprocess.Popen[str]] = []

    def run(*args: str, cwd: Path = tmp_path) -> int:
        proc = subprocess.Popen([sys.executable, str(fake), *args], cwd=cwd,
                                stdout=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        return proc.pid

    yield run
    for proc in started:
        proc.kill()
        proc.wait(timeout=30)
        assert proc.stdout is not None
        proc.stdout.close()


@pytest.fixture
def sites(tmp_path: Path) -> tuple[Path, Path]:
    a, b = tmp_path / "sites" / "a", tmp_path / "sites" / "b"
    a.mkdir(parents=True)
    b.mkdir()
    return a, b


def test_serve_with_site_names_the_site_relative_paths_from_its_directory(
        start: Callable[..., int], sites: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = sites
    assert master_kind(start("serve", "--site", str(a)), a) == SERVE
    assert master_kind(start("serve", "--site=sites/a", cwd=tmp_path), a) == SERVE
    assert master_kind(start("serve", "--site", "a", cwd=a.parent), a) == SERVE
    # The last --site wins, as in argparse.
    assert master_kind(start("serve", "--site", str(b), "--site", str(a)), a) == SERVE
    with pytest.raises(RunnerRefused, match="which is a cgirt runner of another site"):
        master_kind(start("serve", "--site", str(b)), a)
    with pytest.raises(RunnerRefused, match="cannot be read unambiguously"):
        master_kind(start("serve", "--site", str(a), "--si", str(b)), a)
    # argparse would serve the site "-1" from its directory, not the file's: no guess.
    (tmp_path / "cgirt.toml").write_text(f"[sites.a]\nsite = {str(a)!r}\n")
    with pytest.raises(RunnerRefused, match="cannot be read unambiguously"):
        master_kind(start("serve", "--config", "cgirt.toml", "--name", "a", "--site", "-1"), a)
    with pytest.raises(RunnerRefused, match="is not a cgirt runner"):
        master_kind(start("up", "--site", str(a)), a)


def test_serve_with_a_config_file_and_a_name_as_the_admin_units_start_it(
        start: Callable[..., int], sites: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = sites
    (tmp_path / "cgirt.toml").write_text(
        f"[runner]\nworkers = 2\n[sites.a]\nsite = {str(a)!r}\n[sites.b]\nsite = 'sites/b'\n")
    assert master_kind(start("serve", "--config", "cgirt.toml", "--name", "a"), a) == SERVE
    assert master_kind(start("serve", "--config", str(tmp_path / "cgirt.toml"), "--name", "b"),
                       b) == SERVE
    with pytest.raises(RunnerRefused, match="another site"):
        master_kind(start("serve", "--config", "cgirt.toml", "--name", "b"), a)
    # A flag beats the file, as in the CLI.
    assert master_kind(start("serve", "--config", "cgirt.toml", "--name", "b", "--site",
                             str(a)), a) == SERVE
    with pytest.raises(RunnerRefused, match="does not serve this site from"):
        master_kind(start("serve", "--config", "cgirt.toml", "--name", "c"), a)
    with pytest.raises(RunnerRefused, match="configuration file that cannot be read"):
        master_kind(start("serve", "--config", "missing.toml", "--name", "a"), a)


def test_a_host_master_serves_the_sites_of_its_file_and_drop_ins(
        start: Callable[..., int], sites: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = sites
    (tmp_path / "sites.d").mkdir()
    (tmp_path / "host.toml").write_text(f"[host]\nsites_dir = 'sites.d'\n"
                                        f"[sites.a]\nsite = {str(a)!r}\n")
    pid = start("host", "--config", "host.toml")
    assert master_kind(pid, a) == HOST
    with pytest.raises(RunnerRefused, match="another site"):
        master_kind(pid, b)
    (tmp_path / "sites.d" / "b.toml").write_text(f"site = {str(b)!r}\n")
    (tmp_path / "sites.d" / "broken.toml").write_text("site = \n")
    assert master_kind(pid, b) == HOST


def test_a_config_that_is_no_regular_file_is_not_read(
        start: Callable[..., int], sites: tuple[Path, Path]) -> None:
    a, _ = sites
    with pytest.raises(RunnerRefused, match="configuration file that cannot be read"):
        master_kind(start("host", "--config", "/dev/zero"), a)


@pytest.mark.skipif(os.geteuid() != 0, reason="starts a process as another user (root only)")
def test_a_process_of_another_user_counts_only_as_the_site_owners_own_runner(
        sites: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = sites
    nobody = 65534
    (tmp_path / "cgirt.toml").write_text(f"[sites.a]\nsite = {str(a)!r}\n")
    with tempfile.TemporaryDirectory() as bin_dir:  # tmp_path is root's alone
        os.chmod(bin_dir, 0o755)
        fake = Path(bin_dir) / "cgirt"
        # A shell script: this test's Python may be where nobody can run it.
        fake.write_text("#!/bin/sh\necho ready\nread line\n")
        fake.chmod(0o755)
        procs: list[subprocess.Popen[str]] = []

        def start(*args: str) -> int:
            proc = subprocess.Popen([str(fake), *args], cwd="/", user=nobody, text=True,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
            procs.append(proc)
            assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
            return proc.pid

        try:
            by_site, by_config = start("serve", "--site", str(a)), start(
                "serve", "--config", str(tmp_path / "cgirt.toml"), "--name", "a")
            with pytest.raises(RunnerRefused, match="which belongs to another user"):
                master_kind(by_site, a)  # a's owner is root, the gateway's user
            os.chown(a, nobody, -1)
            assert master_kind(by_site, a) == SERVE  # the owner's own: harmless to signal
            # ...but a configuration file it names is not read for it.
            with pytest.raises(RunnerRefused, match="is not a runner of this site"):
                master_kind(by_config, a)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait(timeout=30)
                assert proc.stdin is not None and proc.stdout is not None
                proc.stdin.close()
                proc.stdout.close()


# Taken one at a time (Python's handlers could interrupt one another), in the kernel's order.
def test_signal_sites_signals_a_host_master_once_for_its_sites_and_no_other(
        sites: tuple[Path, Path], tmp_path: Path) -> None:
    a, b = sites
    c, idle, missing = tmp_path / "sites" / "c", tmp_path / "sites" / "idle", tmp_path / "nope"
    c.mkdir()
    idle.mkdir()
    (tmp_path / "sites.d").mkdir()
    (tmp_path / "host.toml").write_text(f"[host]\nsites_dir = 'sites.d'\n[sites.a]\n"
                                        f"site = {str(a)!r}\n[sites.b]\nsite = 'sites/b'\n")
    fake = tmp_path / "bin" / "cgirt"  # a stand-in `cgirt host` that notes its signals
    fake.parent.mkdir()
    fake.write_text(SIGNAL_NOTER)
    noter = SignalNoter(tmp_path, [sys.executable, str(fake), "host", "--config", "host.toml"])
    try:
        for site in (a, b, c):  # c: a tenant naming the master of other sites
            (site / ".cgirt").mkdir()
            (site / ".cgirt" / "runner.pid").write_text(f"{noter.pid}\n")
        done = signal_sites([a, c, idle, b, missing], signal.SIGHUP)
        assert done.masters == {noter.pid: [a, b]}
        assert done.idle == [idle]
        assert done.refused == [
            (c, f"runner.pid names pid {noter.pid}, which is a cgirt runner of another site"),
            (missing, "no such site directory")]
        # A host master reloads the sites that have a request, and only them, on SIGUSR2:
        # its SIGHUP would re-read its whole configuration.
        assert [s for s in (a, b, c) if (s / ".cgirt" / "reload").exists()] == [a, b]
        assert noter.settle() == ["USR2"]
    finally:
        noter.stop()


# A stand-in `cgirt serve --site SITE` that cannot be told apart by its command line: a thread
# of it prints its own id, and its name (the kernel's comm, which any process may set to any
# bytes) is no UTF-8.
ODD = ("import os, threading\n"
       "with open('/proc/self/comm', 'wb') as f:\n"
       "    f.write(b'\\xff\\xfe')\n"
       "threading.Thread(target=lambda: (print(threading.get_native_id(), flush=True),\n"
       "                                 threading.Event().wait()), daemon=True).start()\n"
       "input()\n")


@pytest.mark.parametrize("which", ["thread", "comm"])
def test_a_thread_id_or_an_undecodable_process_name_is_refused_not_a_crash(
        which: str, sites: tuple[Path, Path], tmp_path: Path) -> None:
    a, _ = sites
    fake = tmp_path / "bin" / "cgirt"
    fake.parent.mkdir()
    fake.write_text(ODD)
    proc = subprocess.Popen([sys.executable, str(fake), "serve", "--site", str(a)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        tid = int(proc.stdout.readline())
        (a / ".cgirt").mkdir()
        (a / ".cgirt" / "runner.pid").write_text(f"{tid if which == 'thread' else proc.pid}\n")
        done = signal_sites([a], signal.SIGUSR1)
        if which == "thread":
            # Not a process: the kernel would signal the whole process, whichever it is.
            assert done.refused == [(a, f"runner.pid names pid {tid}, which is not a process "
                                        f"(a thread of one?)")]
            assert proc.poll() is None
        else:  # read as any other: its command line says it is a's runner
            assert done.refused == [] and list(done.masters) == [proc.pid]
    finally:
        proc.kill()
        proc.wait(timeout=30)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.close()
        proc.stdout.close()


@pytest.mark.parametrize("missing", ["ENOSYS", "attribute"])
def test_without_pidfds_nothing_is_signalled_and_the_reason_is_given(
        missing: str, start: Callable[..., int], sites: tuple[Path, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel before 5.3 (ENOSYS) or a Python built without pidfd_open: this machine has
    both, so their absence is stood in for."""
    a, _ = sites
    pid = start("serve", "--site", str(a))
    (a / ".cgirt").mkdir()
    (a / ".cgirt" / "runner.pid").write_text(f"{pid}\n")

    def enosys(pid: int, flags: int = 0) -> int:
        raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))

    if missing == "ENOSYS":
        monkeypatch.setattr(os, "pidfd_open", enosys)
        why = os.strerror(errno.ENOSYS)
    else:
        monkeypatch.delattr(os, "pidfd_open")
        why = "no pidfd_open"
    done = signal_sites([a], signal.SIGUSR1)
    assert done.refused == [(a, f"runner.pid names pid {pid}, which cannot be signalled "
                                f"safely here ({why})")]
    assert not done.masters


@pytest.mark.parametrize("text", ["2147483648\n", "99999999999999999999999\n", "-5\n", "1\n",
                                  "\n", "abc\n"])
def test_a_runner_pid_that_holds_no_possible_pid_is_refused(
        text: str, sites: tuple[Path, Path]) -> None:
    a, _ = sites
    (a / ".cgirt").mkdir()
    (a / ".cgirt" / "runner.pid").write_text(text)
    done = signal_sites([a], signal.SIGUSR1)
    assert done.refused == [(a, "runner.pid holds no process id")]
    assert runner_pid(a) is None  # cgirt up: no runner of its own site
