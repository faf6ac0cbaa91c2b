"""SiteFS path classification and listings; staged uploads and the publish step."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from cgirt.site import ensure_state, read_generation, staging_dir
from ftp_gateway.config import GatewayConfig
from ftp_gateway.errors import FileTooLarge, QuotaExceeded, ReadOnlyPath
from ftp_gateway.filesystem import SiteFS, Zone
from ftp_gateway.publish import StagedUpload, complete_upload, mode_for, sweep_stale_staging
from ftp_gateway.quota import measure, room_for


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "cgi-bin" / "a.py").write_text("A = 1\n")
    (root / "logs").mkdir()  # shadowed by the virtual logs/
    ensure_state(root)
    (root / ".cgirt" / "logs" / "error.log").write_text("boom\n")
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "out")
    os.symlink(root / ".cgirt", root / "state")
    return root


@pytest.fixture
def fs(site: Path, tmp_path: Path) -> SiteFS:
    channel = SimpleNamespace(username="alice", use_gmt_times=True, encoding="utf8",
                              unicode_errors="replace",
                              gateway=SimpleNamespace(config=GatewayConfig(tmp_path / "u.json")))
    return SiteFS(str(site), channel)


def test_zones(fs: SiteFS, site: Path) -> None:
    assert fs.zone(str(site))[0] is Zone.SITE
    assert fs.zone(str(site / "cgi-bin" / "a.py")) == (Zone.SITE, str(site / "cgi-bin" / "a.py"))
    assert fs.zone(str(site / ".cgirt" / "generation"))[0] is Zone.HIDDEN
    assert fs.zone(str(site / "logs")) == (Zone.LOGS_DIR, str(site / ".cgirt" / "logs"))
    assert fs.zone(str(site / "logs" / "error.log"))[0] is Zone.LOG_FILE
    assert fs.zone(str(site / "logs" / "other"))[0] is Zone.HIDDEN
    assert fs.zone(str(site / "out" / "x"))[0] is Zone.HIDDEN
    assert fs.zone(str(site / "state" / "generation"))[0] is Zone.HIDDEN
    assert fs.zone(str(site.parent))[0] is Zone.HIDDEN


def test_listings_hide_state_and_escaping_links(fs: SiteFS, site: Path) -> None:
    assert sorted(fs.listdir(str(site))) == ["cgi-bin", "logs"]
    assert fs.listdir(str(site / "logs")) == ["error.log"]
    with pytest.raises(FileNotFoundError):
        fs.listdir(str(site / ".cgirt"))
    os.symlink(site / "cgi-bin", site / "inside")
    lines = b"".join(fs.format_list(str(site), ["inside"])).decode()
    assert "inside" in lines and "->" not in lines and str(site) not in lines


def test_logs_shows_every_site_log_and_its_rotated_copies_read_only(fs: SiteFS, site: Path) -> None:
    logs = site / ".cgirt" / "logs"
    for name in ("access.log", "access.log.1", "error.log.2.gz", "slow.log", "notes.txt",
                 "error.log.x", "access.log.1.tmp"):
        (logs / name).write_text(name)
    assert fs.listdir(str(site / "logs")) == [
        "access.log", "access.log.1", "error.log", "error.log.2.gz", "slow.log"]
    with fs.open(str(site / "logs" / "access.log.1"), "rb") as f:
        assert f.read() == b"access.log.1"
    assert fs.zone(str(site / "logs" / "notes.txt"))[0] is Zone.HIDDEN
    with pytest.raises(ReadOnlyPath):
        fs.remove(str(site / "logs" / "access.log"))


def test_writes_refused_outside_the_site_zone(fs: SiteFS, site: Path) -> None:
    with pytest.raises(ReadOnlyPath):
        fs.remove(str(site / "logs" / "error.log"))
    with pytest.raises(FileNotFoundError):
        fs.mkdir(str(site / ".cgirt" / "x"))
    with pytest.raises(FileNotFoundError):
        fs.open(str(site / "out" / "x"), "wb")
    fs.chmod(str(site / "cgi-bin" / "a.py"), 0o6755)
    assert stat.S_IMODE((site / "cgi-bin" / "a.py").stat().st_mode) == 0o755


def test_chdir_never_changes_the_process_directory(fs: SiteFS, site: Path) -> None:
    before = os.getcwd()
    fs.chdir(str(site / "cgi-bin"))
    assert fs.cwd == "/cgi-bin" and os.getcwd() == before


def test_changes_bump_the_generation(fs: SiteFS, site: Path) -> None:
    start = read_generation(site)
    fs.mkdir(str(site / "d"))
    fs.rename(str(site / "d"), str(site / "e"))
    fs.rmdir(str(site / "e"))
    fs.remove(str(site / "cgi-bin" / "a.py"))
    assert read_generation(site) == start + 4


def test_publish_is_atomic_and_bumps(site: Path) -> None:
    target = site / "cgi-bin" / "a.py"
    upload = StagedUpload(site, target, "/cgi-bin/a.py", max_size=None, quota_room=None)
    upload.write(b"A = 2\n")
    assert target.read_text() == "A = 1\n"  # nothing visible before publish
    outcome = complete_upload(upload, "alice")
    assert outcome.published and outcome.generation == read_generation(site)
    assert target.read_text() == "A = 2\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert not any(staging_dir(site).iterdir())


def test_syntax_error_keeps_the_old_file(site: Path) -> None:
    target = site / "cgi-bin" / "a.py"
    generation = read_generation(site)
    upload = StagedUpload(site, target, "/cgi-bin/a.py", max_size=None, quota_room=None)
    upload.write(b"A = (\n")
    outcome = complete_upload(upload, "alice")
    assert not outcome.published and outcome.finding is not None
    assert target.read_text() == "A = 1\n" and read_generation(site) == generation
    assert not any(staging_dir(site).iterdir())


def test_limits_while_writing_and_close_discards(site: Path) -> None:
    upload = StagedUpload(site, site / "x", "/x", max_size=10, quota_room=None)
    upload.write(b"0123456789")
    with pytest.raises(FileTooLarge):
        upload.write(b"!")
    upload.close()
    assert not any(staging_dir(site).iterdir()) and not (site / "x").exists()
    upload = StagedUpload(site, site / "x", "/x", max_size=None, quota_room=3)
    with pytest.raises(QuotaExceeded):
        upload.write(b"abcd")
    upload.close()


def test_quota_room(site: Path) -> None:
    usage = measure(site)
    assert usage.files == 1 and usage.bytes == 6  # state dir not counted
    assert room_for(site, site / "cgi-bin" / "a.py", 100, 0, "/a") == 100
    assert room_for(site, site / "new", 100, 0, "/new") == 94
    with pytest.raises(QuotaExceeded):
        room_for(site, site / "new", 0, 1, "/new")
    assert room_for(site, site / "cgi-bin" / "a.py", 0, 1, "/a") is None


def test_sweep_removes_only_old_staging_files(site: Path) -> None:
    old = staging_dir(site) / ".upload-old.part"
    new = staging_dir(site) / ".upload-new.part"
    old.write_bytes(b"x")
    new.write_bytes(b"y")
    os.utime(old, (1000, 1000))
    assert sweep_stale_staging(site) == 1
    assert not old.exists() and new.exists()


def test_modes() -> None:
    assert mode_for(Path("/s"), Path("/s/cgi-bin/x/y.py")) == 0o755
    assert mode_for(Path("/s"), Path("/s/htdocs/y.py")) == 0o644


def _onto_a_full_disk(upload: StagedUpload) -> None:
    """Point the staging file object at /dev/full: every flush fails with ENOSPC."""
    upload._file.close()
    upload._file = open("/dev/full", "wb")  # noqa: SIM115 - closed by discard()


def test_discard_on_a_full_disk_removes_the_staging_file(site: Path) -> None:
    upload = StagedUpload(site, site / "x", "/x", max_size=None, quota_room=None)
    _onto_a_full_disk(upload)
    upload.write(b"still in the buffer")  # no error yet: it has not been flushed
    upload.discard()  # flushing fails again; must not raise, must not leave the file
    assert not upload.staging_path.exists() and upload._file.closed


def test_a_full_disk_is_a_452_refusal(site: Path) -> None:
    from ftp_gateway.errors import DiskFull, reply_for
    upload = StagedUpload(site, site / "x", "/x", max_size=None, quota_room=None)
    _onto_a_full_disk(upload)
    with pytest.raises(DiskFull) as info:
        upload.write(b"z" * (1024 * 1024))  # larger than the buffer: written at once
    assert reply_for(info.value).startswith("452 /x: no space left")
    upload.discard()
    assert not upload.staging_path.exists()


def test_deploy_log_lines_use_the_one_timestamp_format(site: Path) -> None:
    import re

    from ftp_gateway.publish import deploy_log
    deploy_log(site, "alice", "published /cgi-bin/a.py (6 bytes)")
    line = (site / ".cgirt" / "logs" / "deploy.log").read_text()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2} alice "
                        r"published /cgi-bin/a\.py \(6 bytes\)\n", line), line
