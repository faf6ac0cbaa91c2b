"""`cgirt up` and the README's demo command, as a newcomer runs them."""

from __future__ import annotations

import ftplib
import io
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.http import fetch
from tests.support.procs import Proc, children_of, group_members, running, wait_for
from tests.support.servers import REPO, Runner

pytestmark = pytest.mark.integration

BANNER = re.compile(r"Web:\s+http://(?P<http>[\d.]+:\d+)/.*?FTP:\s+ftp://(?P<host>[\d.]+):(?P<port>\d+)/"
                    r"(?:.*?user (?P<user>\w+), password (?P<password>\S+))?", re.S)


class Up:
    def __init__(self, argv: list[str], log: Path, cwd: Path = REPO) -> None:
        self.proc = Proc(argv, log, cwd=cwd)
        self.match = wait_for(lambda: BANNER.search(self.proc.output()) or
                              (not self.proc.alive() and self.proc.output() + "<exited>"), 180, "the banner")
        assert isinstance(self.match, re.Match), self.match
        self.http = self.match["http"]
        self.ftp = (self.match["host"], int(self.match["port"]))

    def parts(self) -> list[int]:
        pids = children_of(self.proc.pid)
        return pids + [g for p in pids for g in children_of(p)]

    def stop(self) -> None:
        parts = self.parts()
        assert len(parts) >= 3
        assert self.proc.stop(signal.SIGTERM, timeout=30) == 0
        alive = [p for p in parts if Path(f"/proc/{p}").exists()
                 and Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
        assert not alive, f"parts of cgirt up outlived it: {alive}"


def exercise(up: Up, user: str, password: str) -> None:
    assert b"cgirt" in fetch(up.http, "/").body
    assert fetch(up.http, "/cgi-bin/hello.py").status == 200
    ftp = ftplib.FTP()
    ftp.connect(*up.ftp, timeout=30)
    ftp.login(user, password)
    ftp.storbinary("STOR cgi-bin/mine.py", io.BytesIO(
        b'print("Content-Type: text/plain")\nprint()\nprint("mine, live")\n'))
    assert fetch(up.http, "/cgi-bin/mine.py").body == b"mine, live\n"
    with pytest.raises(ftplib.error_perm, match="(?s)550-.*SyntaxError"):
        ftp.storbinary("STOR cgi-bin/mine.py", io.BytesIO(b"print('broken\n"))
    assert fetch(up.http, "/cgi-bin/mine.py").body == b"mine, live\n"
    ftp.storbinary("STOR cgi-bin/oops.py", io.BytesIO(
        b'print("Content-Type: text/plain")\nprint()\nraise RuntimeError("read me over FTP")\n'))
    fetch(up.http, "/cgi-bin/oops.py")
    log = io.BytesIO()
    ftp.retrbinary("RETR logs/error.log", log.write)
    assert b"RuntimeError: read me over FTP" in log.getvalue()
    ftp.quit()
    # The banner says explicit FTPS is offered: AUTH TLS, then a protected transfer.
    tls = ftplib.FTP_TLS(context=ssl._create_unverified_context())  # self-signed
    tls.connect(*up.ftp, timeout=30)
    tls.auth()
    tls.login(user, password)
    tls.prot_p()
    tls.storbinary("STOR cgi-bin/mine.py", io.BytesIO(
        b'print("Content-Type: text/plain")\nprint()\nprint("mine, over FTPS")\n'))
    assert fetch(up.http, "/cgi-bin/mine.py").body == b"mine, over FTPS\n"
    tls.quit()


def test_cgirt_up_first_and_second_run(tmp_path: Path) -> None:
    site = tmp_path / "site"
    argv = [sys.executable, "-m", "cgirt", "up", "--site", str(site), "--http", "127.0.0.1:0",
            "--ftp", "127.0.0.1:0"]
    up = Up(argv, tmp_path / "up1.log")
    try:
        assert "created from the skeleton" in up.proc.output()
        assert "for development" in up.proc.output() and "INSTALL.md" in up.proc.output()
        user, password = up.match["user"], up.match["password"]
        assert user and password
        exercise(up, user, password)
    finally:
        up.stop()
    again = Up(argv, tmp_path / "up2.log")
    try:
        assert again.match["password"] is None and "created" not in again.proc.output()
        exercise(again, user, password)
    finally:
        again.stop()


def cgirt(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgirt", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def test_user_commands_find_the_users_file_of_up(tmp_path: Path) -> None:
    site = tmp_path / "site"
    elsewhere = tmp_path / "other"
    (elsewhere / "cgi-bin").mkdir(parents=True)
    # Before `cgirt up` keeps one, nothing is guessed: a clear error, and no file made.
    refused = cgirt("user", "add", "alice", "--site", str(site.parent / "other"), stdin="pw\n")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert "--users FILE" in refused.stderr and "--config FILE" in refused.stderr
    assert not (elsewhere / ".cgirt" / "users.json").exists()
    up = Up([sys.executable, "-m", "cgirt", "up", "--site", str(site), "--http", "127.0.0.1:0",
             "--ftp", "127.0.0.1:0"], tmp_path / "up.log")
    try:
        added = cgirt("user", "add", "alice", "--site", str(site), stdin="alice-pw-1\n")
        assert added.returncode == 0, added.stderr
        listed = cgirt("user", "list", "--site", str(site))
        assert listed.returncode == 0
        assert {line.split("\t")[0] for line in listed.stdout.splitlines()} == {"owner", "alice"}
        ftp = ftplib.FTP()
        ftp.connect(*up.ftp, timeout=30)
        ftp.login("alice", "alice-pw-1")  # the running gateway reads the file up gave it
        assert "cgi-bin" in ftp.nlst()
        ftp.quit()
        assert cgirt("user", "del", "alice", "--site", str(site)).returncode == 0
        ftp = ftplib.FTP()
        ftp.connect(*up.ftp, timeout=30)
        with pytest.raises(ftplib.error_perm, match="530"):
            ftp.login("alice", "alice-pw-1")
        ftp.close()
    finally:
        up.stop()


def test_bad_arguments_to_up(tmp_path: Path) -> None:
    (tmp_path / "not-a-site").mkdir()
    proc = subprocess.run([sys.executable, "-m", "cgirt", "up", "--site", str(tmp_path / "not-a-site")],
                          capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 4 and proc.stderr.count("\n") == 1 and "cgi-bin" in proc.stderr


def test_readme_quick_start_in_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    readme = (clone / "README.md").read_text()
    quick = re.search(r"## Quick start\n(.*?)\n## ", readme, re.S)
    assert quick, "README has no quick start"
    commands = re.findall(r"^    (\./\S+.*)$", quick.group(1), re.M)
    assert commands == ["./run-demo", "./run-tests"]
    up = Up(["./run-demo", "--site", str(tmp_path / "demo-site"), "--http", "127.0.0.1:0",
             "--ftp", "127.0.0.1:0"], tmp_path / "demo.log", cwd=clone)
    try:
        exercise(up, up.match["user"], up.match["password"])
    finally:
        up.stop()


def up_argv(site: Path) -> list[str]:
    return [sys.executable, "-m", "cgirt", "up", "--site", str(site), "--http", "127.0.0.1:0",
            "--ftp", "127.0.0.1:0"]


def test_a_site_with_only_cgi_bin_starts_and_serves(tmp_path: Path) -> None:
    site = tmp_path / "bare"
    (site / "cgi-bin").mkdir(parents=True)
    script = site / "cgi-bin" / "root.py"
    script.write_text('import os\nprint("Content-Type: text/plain")\nprint()\n'
                      'print(os.environ["DOCUMENT_ROOT"])\n')
    script.chmod(0o755)
    up = Up(up_argv(site), tmp_path / "up.log")
    try:
        assert fetch(up.http, "/cgi-bin/root.py").body == f"{site}/htdocs\n".encode()
        assert fetch(up.http, "/").status == 404  # no htdocs/: no static files
        assert fetch(up.http, "/index.html").status == 404
        assert not (site / "htdocs").exists()
    finally:
        up.stop()


def test_a_second_up_on_the_same_site_is_refused_and_disturbs_nothing(tmp_path: Path) -> None:
    site = tmp_path / "site"
    first = Up(up_argv(site), tmp_path / "up1.log")
    try:
        state = site / ".cgirt"
        parts = sorted(first.parts())
        watched = {name: (state / name).read_bytes() for name in ("runner.pid", "ftp.port")}
        watched["http.out"] = (state / "logs" / "http.out").read_bytes()
        socket_inode = (state / "runner.sock").stat().st_ino
        second = subprocess.run(up_argv(site), capture_output=True, text=True, timeout=120, cwd=REPO)
        assert second.returncode == 4, second
        assert second.stderr.count("\n") == 1, second.stderr
        assert "already being served by `cgirt up`" in second.stderr
        assert f"(pid {first.proc.pid})" in second.stderr and str(site) in second.stderr
        assert "cgirt is up" not in second.stdout
        # The first: same processes, files and socket, and it still serves.
        assert sorted(first.parts()) == parts
        assert {name: (state / name).read_bytes() for name in ("runner.pid", "ftp.port")} \
            == {k: v for k, v in watched.items() if k != "http.out"}
        assert (state / "logs" / "http.out").read_bytes() == watched["http.out"]
        assert (state / "runner.sock").stat().st_ino == socket_inode
        assert fetch(first.http, "/cgi-bin/hello.py").status == 200
        ftp = ftplib.FTP()
        ftp.connect(*first.ftp, timeout=30)
        ftp.login(first.match["user"], first.match["password"])
        ftp.quit()
    finally:
        first.stop()
    # Once the first has stopped, the site is free again.
    again = Up(up_argv(site), tmp_path / "up2.log")
    again.stop()


def test_a_part_that_cannot_start_names_its_log(tmp_path: Path) -> None:
    site = tmp_path / "site"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        argv = up_argv(site)
        argv[argv.index("--http") + 1] = f"127.0.0.1:{port}"
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=REPO)
    log = site / ".cgirt" / "logs" / "http.log"
    assert proc.returncode == 4, proc
    assert f"the http process exited (status 4); see {log}" in proc.stderr
    assert "cannot listen" in log.read_text()


def test_kill_9_of_up_leaves_none_of_its_parts_and_the_site_starts_again(
        tmp_path: Path) -> None:
    site = tmp_path / "site"
    first = Up(up_argv(site), tmp_path / "up1.log")
    parts = first.parts()  # runner (and its workers), gateway, front end
    assert len(parts) >= 4
    try:
        first.proc.stop(signal.SIGKILL)  # the parts lead sessions of their own: not this
        wait_for(lambda: not any(running(p) for p in parts), 30, "every part to die with up")
        again = Up(up_argv(site), tmp_path / "up2.log")  # the killed run's files do not block
        assert fetch(again.http, "/cgi-bin/hello.py").status == 200
        again.stop()
    finally:
        for pid in parts:  # each part leads its own process group
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_for(lambda: not any(group_members(pid) for pid in parts), 30, "the parts to end")


def test_up_yields_only_to_a_runner_of_its_own_site(site: Path, tmp_path: Path) -> None:
    # runner.pid is the site owner's to write: a live pid in it holds the site back only
    # when that process is a runner master of this very site (cgirt.runnerproc).
    from cgirt import site as site_layout
    from cgirt.up import AlreadyServed, claim_site

    site_layout.ensure_state(site)
    pid_file = site_layout.runner_pid_path(site)
    other = tmp_path / "other"
    other.mkdir()
    stranger = Proc([sys.executable, "-c", "import time; time.sleep(600)"],
                    tmp_path / "stranger.log")
    try:
        runner = Runner(site, other, workers=1)
        try:
            pid_file.write_text(f"{stranger.pid}\n")  # alive, but no runner: no reason to refuse
            os.close(claim_site(site))
            assert pid_file.read_text() == f"{stranger.pid}\n"  # claiming writes up.lock only
            pid_file.write_text(f"{runner.pid}\n")  # the site's own `cgirt serve`
            with pytest.raises(AlreadyServed, match=rf"already being served by a cgirt runner "
                               rf"\(pid {runner.pid}\)"):
                claim_site(site)
        finally:
            runner.stop()
    finally:
        stranger.stop()
