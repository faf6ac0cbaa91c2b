"""Root (the FTP gateway, the runner's master) never follows a link the site's owner planted
in the site's own files: at each such path a link to a root-only file is refused, the file
keeps its content and mode, and the refusal is reported."""

from __future__ import annotations

import logging
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Callable

import pytest

from cgirt import site as layout
from cgirt import sitefiles
from cgirt.log import ErrorLog
from cgirt.logfiles import LogFile, ReopenCounter, Rotator
from cgirt.runnerproc import runner_pid
from cgirt.sitefiles import SymlinkRefused
from ftp_gateway.config import GatewayConfig
from ftp_gateway.errors import PathRefused, ReloadRefused
from ftp_gateway.filesystem import SiteFS, Zone
from ftp_gateway.handler import publish_reply
from ftp_gateway.publish import StagedUpload, complete_upload, deploy_log
from ftp_gateway.site_commands import check_scripts, reload_runner

SECRET = b"root:$6$secret-hash:19000:0:99999:7:::\n"


class Target:
    """A root-only file, and a check that nothing touched it."""

    def __init__(self, path: Path) -> None:
        path.write_bytes(SECRET)
        os.chmod(path, 0o600)
        os.utime(path, (1_000_000, 1_000_000))
        self.path = path

    def unchanged(self) -> bool:
        st = os.stat(self.path)
        return (self.path.read_bytes() == SECRET and stat.S_IMODE(st.st_mode) == 0o600
                and st.st_mtime == 1_000_000 and st.st_atime == 1_000_000)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "cgi-bin").mkdir(parents=True)
    layout.ensure_state(root)
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "etc"
    folder.mkdir()
    return folder


@pytest.fixture
def target(outside: Path) -> Target:
    return Target(outside / "shadow")


def plant(link: Path, to: Path) -> None:
    """The owner's move: replace whatever is at `link` by a link to `to`."""
    if link.is_dir() and not link.is_symlink():
        shutil.rmtree(link)
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(to)


# --- the helper ----------------------------------------------------------------------------

def test_open_file_refuses_a_link_at_the_end_or_on_the_way(site: Path, outside: Path,
                                                           target: Target) -> None:
    log = layout.error_log_path(site)
    plant(log, target.path)
    with pytest.raises(SymlinkRefused, match=r"error\.log is a symbolic link: refused"):
        sitefiles.open_file(site, log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with pytest.raises(SymlinkRefused):
        sitefiles.open_file(site, log, os.O_RDONLY)
    os.unlink(log)
    (outside / "error.log").symlink_to(target.path)
    plant(layout.logs_dir(site), outside)  # the folder on the way instead
    with pytest.raises(SymlinkRefused, match=r"\.cgirt/logs is a symbolic link"):
        sitefiles.open_file(site, log, os.O_WRONLY | os.O_TRUNC)
    assert target.unchanged()


def test_open_file_refuses_a_fifo_without_blocking(site: Path) -> None:
    fifo = layout.error_log_path(site)
    os.mkfifo(fifo)
    with pytest.raises(SymlinkRefused, match="not a regular file"):
        sitefiles.open_file(site, fifo, os.O_RDONLY)


def test_ensure_state_refuses_each_linked_state_folder(site: Path, outside: Path) -> None:
    for folder in (layout.logs_dir(site), layout.staging_dir(site), layout.state_dir(site)):
        saved = folder.with_name(folder.name + ".saved")
        folder.rename(saved)
        folder.symlink_to(outside)
        with pytest.raises(SymlinkRefused, match=f"{folder.name} is a symbolic link"):
            layout.ensure_state(site)
        folder.unlink()
        saved.rename(folder)
    assert os.listdir(outside) == []  # nothing made through the links


# --- the gateway ---------------------------------------------------------------------------

def test_generation_bump_never_writes_through_a_planted_temp_or_lock(site: Path,
                                                                      target: Target) -> None:
    before = layout.read_generation(site)
    plant(layout.state_dir(site) / f"generation.{os.getpid()}.tmp", target.path)
    assert layout.bump_generation(site) == before + 1  # the link is replaced, not followed
    assert layout.read_generation(site) == before + 1
    plant(layout.state_dir(site) / "generation.lock", target.path)
    with pytest.raises(SymlinkRefused, match="generation.lock is a symbolic link"):
        layout.bump_generation(site)
    assert target.unchanged()


def test_deploy_log_through_a_link_is_refused_and_the_line_kept(
        site: Path, target: Target, caplog: pytest.LogCaptureFixture) -> None:
    plant(layout.deploy_log_path(site), target.path)
    with caplog.at_level(logging.WARNING, logger="cgirt.ftp"):
        deploy_log(site, "alice", "published /cgi-bin/a.py, generation 7")
    assert target.unchanged()
    assert "deploy.log is a symbolic link: refused" in caplog.text
    assert "published /cgi-bin/a.py, generation 7" in caplog.text  # lost nowhere


def test_a_staging_folder_swapped_mid_upload_is_not_followed(site: Path, outside: Path,
                                                             target: Target) -> None:
    # A file that is not Python is not compiled: the old code chmod'ed the staged path,
    # then through the owner's links, to 0644.
    (site / "htdocs").mkdir()
    upload = StagedUpload(site, site / "htdocs" / "x.txt", "/htdocs/x.txt", None, None)
    upload.write(b"plain text\n")
    evil = outside / "evil"
    evil.mkdir()
    (evil / upload.staging_path.name).symlink_to(target.path)
    staging = layout.staging_dir(site)
    staging.rename(staging.with_name("staging.old"))
    staging.symlink_to(evil)
    with pytest.raises(SymlinkRefused, match="staging is a symbolic link"):
        complete_upload(upload, "alice")
    upload.discard()
    assert not (site / "htdocs" / "x.txt").exists()
    assert (evil / upload.staging_path.name).is_symlink()
    assert target.unchanged()


def test_a_target_folder_swapped_mid_upload_gets_nothing(site: Path, outside: Path) -> None:
    upload = StagedUpload(site, site / "cgi-bin" / "evil.sh", "/cgi-bin/evil.sh", None, None)
    upload.write(b"#!/bin/sh\necho run as root\n")
    cgi = site / "cgi-bin"
    cgi.rename(site / "cgi-bin.old")
    cgi.symlink_to(outside)  # /etc/profile.d, say
    with pytest.raises(SymlinkRefused, match="outside the site"):
        complete_upload(upload, "alice")
    upload.discard()
    assert os.listdir(outside) == []
    assert os.listdir(layout.staging_dir(site)) == []


def test_a_check_reads_the_staged_bytes_not_a_file_swapped_in(site: Path, outside: Path,
                                                              target: Target) -> None:
    upload = StagedUpload(site, site / "cgi-bin" / "ok.py", "/cgi-bin/ok.py", None, None)
    upload.write(b"print('fine')\n")
    staged = layout.staging_dir(site) / upload.staging_path.name
    staged.unlink()  # the owner's link at the staged name: the check still reads the upload
    staged.symlink_to(target.path)
    outcome = complete_upload(upload, "alice")
    assert outcome.finding is None  # the upload's own bytes were checked, not the secret's
    assert target.unchanged()  # mode and owner were set on the upload's inode alone


def _fs(site: Path, tmp_path: Path) -> SiteFS:
    channel = SimpleNamespace(username="alice", use_gmt_times=True, encoding="utf8",
                              unicode_errors="replace",
                              gateway=SimpleNamespace(config=GatewayConfig(tmp_path / "u.json")))
    return SiteFS(str(site), channel)


def test_logs_folder_view_follows_no_link(site: Path, outside: Path, target: Target,
                                          tmp_path: Path,
                                          caplog: pytest.LogCaptureFixture) -> None:
    fs = _fs(site, tmp_path)
    layout.slow_log_path(site).write_text("slow\n")
    plant(layout.error_log_path(site), target.path)
    shown = str(site / "logs" / "error.log")
    with pytest.raises(PathRefused, match="/logs/error.log: refused: a symbolic link"):
        fs.open(shown, "rb")
    with pytest.raises(PathRefused):
        fs.stat(shown)
    with pytest.raises(PathRefused):
        fs.getsize(shown)
    assert not fs.isfile(shown)
    assert fs.listdir(str(site / "logs")) == ["slow.log"]
    with fs.open(str(site / "logs" / "slow.log"), "rb") as f:
        assert f.read() == b"slow\n"
    os.unlink(layout.error_log_path(site))
    (outside / "error.log").symlink_to(target.path)
    (outside / "deploy.log").write_text("not the site's\n")
    plant(layout.logs_dir(site), outside)
    with pytest.raises(PathRefused, match="^/logs: refused"):
        fs.listdir(str(site / "logs"))
    with pytest.raises(PathRefused):
        fs.open(str(site / "logs" / "deploy.log"), "rb")
    assert not fs.isdir(str(site / "logs"))
    assert ".cgirt/logs is a symbolic link: refused" in caplog.text
    assert target.unchanged()


def _swap_after_the_check(monkeypatch: pytest.MonkeyPatch, swap: Callable[[], None],
                          last: str = "") -> None:
    """The owner's script wins the race: the path changes between the gateway's check
    (`writable`, of the path ending with `last`) and its operation."""
    checked = SiteFS.writable

    def then_swap(self: SiteFS, path: str) -> str:
        disk = checked(self, path)
        if path.endswith(last):
            swap()
        return disk

    monkeypatch.setattr(SiteFS, "writable", then_swap)


def _to_outside(folder: Path, outside: Path) -> Callable[[], None]:
    def swap() -> None:
        if not folder.is_symlink():
            folder.rename(folder.with_name(folder.name + ".old"))
            folder.symlink_to(outside)
    return swap


@pytest.mark.parametrize("operation", ["mkdir", "rmdir", "remove", "rename"])
def test_a_folder_swapped_for_a_link_after_the_check_leads_nowhere(
        site: Path, outside: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture, operation: str) -> None:
    fs = _fs(site, tmp_path)
    cgi = site / "cgi-bin"
    (cgi / "a.py").write_text("A = 1\n")
    (cgi / "sub").mkdir()
    (outside / "a.py").write_text("the admin's\n")  # /etc/profile.d/a.sh, say
    (outside / "sub").mkdir()
    before = sorted(os.listdir(outside))
    _swap_after_the_check(monkeypatch, _to_outside(cgi, outside),
                          "b.py" if operation == "rename" else "")
    with pytest.raises(PathRefused, match="refused: a symbolic link"):
        if operation == "mkdir":
            fs.mkdir(str(cgi / "new"))
        elif operation == "rmdir":
            fs.rmdir(str(cgi / "sub"))
        elif operation == "remove":
            fs.remove(str(cgi / "a.py"))
        else:
            fs.rename(str(cgi / "a.py"), str(cgi / "b.py"))
    assert sorted(os.listdir(outside)) == before
    assert (outside / "a.py").read_text() == "the admin's\n"
    assert "is reached through a link out of the site's own files: refused" in caplog.text


def test_a_download_swapped_for_a_link_after_the_check_sends_nothing(
        site: Path, target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fs = _fs(site, tmp_path)
    script = site / "cgi-bin" / "a.py"
    script.write_text("A = 1\n")
    with fs.open(str(script), "rb") as f:
        assert f.read() == b"A = 1\n"
    (site / "cgi-bin" / "inside.py").symlink_to("a.py")  # a link inside the site still works
    with fs.open(str(site / "cgi-bin" / "inside.py"), "rb") as f:
        assert f.read() == b"A = 1\n"
    checked = SiteFS.readable

    def then_swap(self: SiteFS, path: str) -> str:
        disk = checked(self, path)
        script.unlink()
        script.symlink_to(target.path)
        return disk

    monkeypatch.setattr(SiteFS, "readable", then_swap)
    with pytest.raises(FileNotFoundError):  # resolved now, it leads out: as if absent
        fs.open(str(script), "rb").close()
    assert target.unchanged()


@pytest.mark.parametrize("operation", ["chmod", "utime"])
def test_a_file_swapped_for_a_link_after_the_check_keeps_the_target_as_it_was(
        site: Path, target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        operation: str) -> None:
    fs = _fs(site, tmp_path)
    script = site / "cgi-bin" / "a.py"
    script.write_text("A = 1\n")
    _swap_after_the_check(monkeypatch, lambda: (script.unlink(), script.symlink_to(target.path)))
    with pytest.raises(PathRefused, match="refused: a symbolic link"):
        if operation == "chmod":
            fs.chmod(str(script), 0o777)
        else:
            fs.utime(str(script), 2_000_000)
    assert target.unchanged()


def test_site_reload_neither_touches_nor_reads_through_links(site: Path, target: Target,
                                                             tmp_path: Path) -> None:
    pid_file = layout.runner_pid_path(site)
    plant(pid_file, target.path)
    assert runner_pid(site) is None  # a link is no pid file, even to a file holding a pid
    target.path.with_name("pid").write_text(f"{os.getpid()}\n")
    plant(pid_file, target.path.with_name("pid"))
    assert runner_pid(site) is None
    # A master of many sites serving this one (`cgirt host`, as its command line and
    # configuration say), and a planted reload request.
    fake = tmp_path / "bin" / "cgirt"
    fake.parent.mkdir()
    fake.write_text("import time; time.sleep(600)\n")
    (tmp_path / "host.toml").write_text(f"[sites.a]\nsite = {str(site)!r}\n")
    runner = subprocess.Popen([sys.executable, str(fake), "host", "--config", "host.toml"],
                              cwd=tmp_path)
    try:
        os.unlink(pid_file)
        pid_file.write_text(f"{runner.pid}\n")
        plant(layout.reload_request_path(site), target.path)
        with pytest.raises(ReloadRefused, match="cannot make the reload request"):
            reload_runner(site)
        os.unlink(layout.reload_request_path(site))
        assert reload_runner(site)[0] is True
        assert layout.reload_request_path(site).is_file()
        assert runner.wait(timeout=60) == -layout.HOST_SITE_RELOAD_SIGNAL  # not its SIGHUP
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert target.unchanged()


# --- the runner's master (and a worker before its privilege drop) ----------------------------

def test_pid_file_is_written_over_a_link_never_through_it(site: Path, outside: Path,
                                                          target: Target) -> None:
    pid_file = layout.runner_pid_path(site)
    plant(pid_file, target.path)
    sitefiles.write_pid(site, pid_file)
    assert not pid_file.is_symlink() and pid_file.read_text() == f"{os.getpid()}\n"
    plant(pid_file, target.path)
    with pytest.raises(SymlinkRefused):
        sitefiles.remove_pid(site, pid_file)
    assert pid_file.is_symlink()
    os.unlink(pid_file)
    (outside / "runner.pid").symlink_to(target.path)
    (outside / "reload").write_text("x")
    plant(layout.state_dir(site), outside)
    with pytest.raises(SymlinkRefused, match=r"\.cgirt is a symbolic link"):
        sitefiles.write_pid(site, pid_file)
    with pytest.raises(SymlinkRefused):
        sitefiles.unlink(site, layout.reload_request_path(site))
    assert (outside / "reload").exists() and (outside / "runner.pid").is_symlink()
    assert target.unchanged()


def test_rotation_follows_no_linked_folder(site: Path, outside: Path, target: Target,
                                           caplog: pytest.LogCaptureFixture) -> None:
    big = outside / "error.log"
    big.write_bytes(b"x" * 100)
    plant(layout.logs_dir(site), outside)
    rotator = Rotator(layout.logs_dir(site), ["error.log"], ReopenCounter(), max_bytes=10,
                      backups=1, always=["error.log"], anchor=site)
    with caplog.at_level(logging.ERROR, logger="cgirt.error"):
        rotator.tick(0.0)
        rotator.reopen()
    assert sorted(os.listdir(outside)) == ["error.log", "shadow"]
    assert big.read_bytes() == b"x" * 100
    assert "logs is a symbolic link: refused" in caplog.text
    assert target.unchanged()


def test_a_site_log_is_opened_through_no_link(site: Path, outside: Path, target: Target) -> None:
    plant(layout.error_log_path(site), target.path)
    errlog = ErrorLog(layout.error_log_path(site), site)
    with pytest.raises(SymlinkRefused):
        errlog.open()
    os.unlink(layout.error_log_path(site))
    plant(layout.logs_dir(site), outside)
    with pytest.raises(SymlinkRefused):
        LogFile(layout.access_log_path(site), anchor=site).open()
    assert os.listdir(outside) == ["shadow"]
    assert target.unchanged()


def test_a_socket_swapped_for_a_link_after_its_bind_keeps_the_target_mode(
        site: Path, target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    from cgirt.errors import StartupError
    from cgirt.runner.server import bind
    status = layout.status_socket_path(site)
    real_bind = socket.socket.bind

    def owner_wins_the_race(self: socket.socket, address: str) -> None:
        real_bind(self, address)
        os.unlink(address)
        os.symlink(target.path, address)

    monkeypatch.setattr(socket.socket, "bind", owner_wins_the_race)
    with pytest.raises(StartupError, match="cannot listen on unix:"):
        bind(f"unix:{status}", 0o666)
    assert target.unchanged()


def test_a_generation_the_owner_replaced_is_read_through_no_link_and_never_hangs(
        site: Path, target: Target) -> None:
    generation = layout.generation_path(site)
    plant(generation, target.path)
    assert layout.read_generation(site) == 0  # not whatever number the target holds
    assert layout.bump_generation(site) == 1 and not generation.is_symlink()
    assert target.unchanged()
    generation.unlink()
    os.mkfifo(generation)  # every publish of the site waited on it, holding its lock
    bumped: list[int] = []
    bumping = threading.Thread(target=lambda: bumped.append(layout.bump_generation(site)))
    bumping.start()
    bumping.join(timeout=60)
    if bumping.is_alive():  # let the blocked open go before failing
        os.close(os.open(generation, os.O_WRONLY | os.O_NONBLOCK))
        bumping.join()
    assert bumped == [1]
    assert layout.read_generation(site) == 1 and stat.S_ISREG(os.lstat(generation).st_mode)


@pytest.mark.parametrize("planted", ["link", "fifo"])
def test_site_check_reads_no_file_swapped_in_after_its_look(
        site: Path, target: Target, monkeypatch: pytest.MonkeyPatch, planted: str) -> None:
    script = site / "cgi-bin" / "a.py"
    script.write_text("A = 1\n")
    assert check_scripts(site, script, "/cgi-bin/a.py").checked == 1
    looked = Path.is_file

    def then_swap(self: Path) -> bool:  # the owner's script wins the race
        regular = looked(self)
        if self == script and regular and not script.is_symlink():
            script.unlink()
            script.symlink_to(target.path) if planted == "link" else os.mkfifo(script)
        return regular

    monkeypatch.setattr(Path, "is_file", then_swap)
    outcomes: list[object] = []

    def check(start: Path, display: str) -> None:
        try:
            outcomes.append(check_scripts(site, start, display).findings)
        except OSError as exc:
            outcomes.append(exc)

    for start, display in ((script, "/cgi-bin/a.py"), (site / "cgi-bin", "/cgi-bin")):
        if script.is_symlink() or not looked(script):
            script.unlink()
            script.write_text("A = 1\n")
        checking = threading.Thread(target=check, args=(start, display))
        checking.start()
        checking.join(timeout=60)
        if checking.is_alive():  # a read blocked on the FIFO: let it go before failing
            os.close(os.open(script, os.O_WRONLY | os.O_NONBLOCK))
            checking.join()
        assert len(outcomes) == 1, outcomes
        if start == script:  # the file itself: refused, named as the client sees it
            assert isinstance(outcomes[0], SymlinkRefused), outcomes
            assert outcomes[0].below(site).startswith(
                "a link leads out" if planted == "link" else "/cgi-bin/a.py is not a regular")
        else:  # met while walking a folder: skipped
            assert outcomes == [[]]
        outcomes.clear()
    assert target.unchanged()  # never read, by the check nor by the walk's look at its head


def test_a_publish_whose_generation_bump_is_refused_says_it_was_published(
        site: Path, target: Target, caplog: pytest.LogCaptureFixture) -> None:
    script = site / "cgi-bin" / "a.py"
    script.write_text("A = 1\n")
    upload = StagedUpload(site, script, "/cgi-bin/a.py", None, None)
    upload.write(b"A = 2\n")
    plant(layout.state_dir(site) / "generation.lock", target.path)
    with caplog.at_level(logging.WARNING, logger="cgirt.ftp"):
        outcome = complete_upload(upload, "alice")  # raised, and the reply was 451
    assert outcome.published and outcome.generation is None
    assert publish_reply("/cgi-bin/a.py", outcome).startswith(
        "226 Transfer complete; /cgi-bin/a.py published, but the site's generation could not")
    assert script.read_text() == "A = 2\n"
    assert os.listdir(layout.staging_dir(site)) == []
    assert "generation.lock is a symbolic link" in caplog.text
    assert "published /cgi-bin/a.py (6 bytes), but the generation could not be bumped" \
        in layout.deploy_log_path(site).read_text()
    assert target.unchanged()


def test_a_change_whose_generation_bump_is_refused_is_done_and_said_so(
        site: Path, target: Target, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    fs = _fs(site, tmp_path)
    script = site / "cgi-bin" / "a.py"
    script.write_text("A = 1\n")
    plant(layout.state_dir(site) / "generation.lock", target.path)
    with caplog.at_level(logging.WARNING, logger="cgirt.ftp"):
        fs.remove(str(script))  # raised, and pyftpdlib's 550 named the disk path
    assert not script.exists()
    assert "deleted /cgi-bin/a.py, but the generation was not bumped" in caplog.text
    assert "deleted /cgi-bin/a.py, but the generation could not be bumped" \
        in layout.deploy_log_path(site).read_text()
    assert target.unchanged()


def test_a_listing_swapped_for_a_link_after_the_check_shows_nothing_outside(
        site: Path, outside: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    fs = _fs(site, tmp_path)
    sub = site / "cgi-bin" / "sub"
    sub.mkdir()
    (sub / "mine.py").write_text("A = 1\n")
    (outside / "root-only-name").write_text("x\n")
    assert fs.listdir(str(sub)) == ["mine.py"]
    looked, filtered = SiteFS.zone, SiteFS._listable

    def then_swap(self: SiteFS, path: str) -> tuple[Zone, str]:  # after the check
        result = looked(self, path)
        if path == str(sub) and not sub.is_symlink():
            sub.rename(sub.with_name("sub.real"))
            sub.symlink_to(outside)
        return result

    def then_swap_back(self: SiteFS, parent: str, name: str) -> bool:  # before the filter
        if sub.is_symlink():
            sub.unlink()
            sub.with_name("sub.real").rename(sub)
        return filtered(self, parent, name)

    monkeypatch.setattr(SiteFS, "zone", then_swap)
    monkeypatch.setattr(SiteFS, "_listable", then_swap_back)
    with pytest.raises(PathRefused, match="refused: a symbolic link"):
        fs.listdir(str(sub))
    assert "sub is reached through a link out of the site's own files" in caplog.text
