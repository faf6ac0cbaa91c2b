"""The host's notices: each site's notices checked with that site's own secret and routed to
that site alone; anything else refused with a clear error, changing nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cgirt.configfile import ConfigFile
from cgirt.errors import Forbidden, ScriptNotFound
from cgirt.host.config import HostConfigError, load
from cgirt.host.notices import HostNotices
from cgirt.host.worker import ActivityTable
from cgirt.notice import MAX_SKEW, request

SECRET_A, SECRET_B = b"a" * 32, b"b" * 32


def parts(notice: bytes) -> tuple[str, str, str]:
    """(action, query, Authorization) of a notice, as the status server hands them over."""
    line, auth = notice.split(b"\r\n")[:2]
    target = line.split()[1].decode()
    path, _, query = target.partition("?")
    return path.lstrip("/"), query, auth.decode().partition(": ")[2]


def write_host(tmp_path: Path, host: str = "", extra_a: str = "", b_dir: str = "b") -> Path:
    for directory, secret in (("a", SECRET_A), ("b", SECRET_B)):
        (tmp_path / directory).mkdir(exist_ok=True)
        (tmp_path / f"{directory}.secret").write_bytes(secret + b"\n")
    (tmp_path / "other").mkdir(exist_ok=True)
    (tmp_path / "other" / b_dir).mkdir(exist_ok=True)
    path = tmp_path / "cgirt.toml"
    path.write_text(
        f"[host]\n{host}\n"
        f'[sites.alpha]\nsite = "{tmp_path}/a"\nlisten = "unix:{tmp_path}/a.sock"\n'
        f'publish_secret = "{tmp_path}/a.secret"\n{extra_a}\n'
        f'[sites.beta]\nsite = "{tmp_path}/other/{b_dir}"\nlisten = "unix:{tmp_path}/b.sock"\n'
        f'publish_secret = "{tmp_path}/b.secret"\n'
        f'[sites.gamma]\nsite = "{tmp_path}/other"\nlisten = "unix:{tmp_path}/c.sock"\n')
    return path


class Master:
    """What HostNotices hands a notice to: records it."""

    def __init__(self) -> None:
        self.published: list[str] = []
        self.reloaded: list[str] = []

    def publish(self, name: str) -> int:
        self.published.append(name)
        return len(self.published)


@pytest.fixture
def routed(tmp_path: Path) -> tuple[HostNotices, Master]:
    master = Master()
    notices = HostNotices(master.publish, master.reloaded.append)
    notices.sites(load(write_host(tmp_path)).sites.values())
    return notices, master


def test_each_sites_notice_reaches_that_site_only(routed: tuple[HostNotices, Master]) -> None:
    notices, master = routed
    assert notices(*parts(request(SECRET_B, "b"))) == b"published 1\n"
    assert notices(*parts(request(SECRET_A, "a", action="reload"))) == b"reloading\n"
    assert (master.published, master.reloaded) == (["beta"], ["alpha"])


@pytest.mark.parametrize("secret, site, error, message", [
    (SECRET_B, "a", Forbidden, "publish notice refused: bad or missing signature"),
    (b"x" * 32, "b", Forbidden, "bad or missing signature"),  # someone without a secret
    (SECRET_A, "gamma", ScriptNotFound, "serves no site 'gamma' that takes notices"),
    (SECRET_A, "other", ScriptNotFound, "serves no site 'other'"),  # served, but no secret
    (SECRET_A, "alpha", ScriptNotFound, "serves no site 'alpha'"),  # a notice names directories
])
def test_other_notices_are_refused_and_change_nothing(
        routed: tuple[HostNotices, Master], secret: bytes, site: str, error: type[Exception],
        message: str) -> None:
    notices, master = routed
    with pytest.raises(error, match=message):
        notices(*parts(request(secret, site)))
    assert (master.published, master.reloaded) == ([], [])


def test_a_replay_is_refused_across_a_reload_of_the_configuration(
        tmp_path: Path, routed: tuple[HostNotices, Master]) -> None:
    notices, master = routed
    notice = parts(request(SECRET_A, "a"))
    notices(*notice)
    notices.sites(load(tmp_path / "cgirt.toml").sites.values())  # SIGHUP, secrets unchanged
    with pytest.raises(Forbidden, match="replayed"):
        notices(*notice)
    assert master.published == ["alpha"]


def test_a_replay_is_refused_after_its_site_is_removed_and_added_back(
        tmp_path: Path, routed: tuple[HostNotices, Master]) -> None:
    notices, master = routed
    notice = parts(request(SECRET_A, "a"))
    notices(*notice)
    specs = list(load(tmp_path / "cgirt.toml").sites.values())
    notices.sites([s for s in specs if s.name != "alpha"])  # a SIGHUP removes alpha
    with pytest.raises(ScriptNotFound, match="serves no site 'a'"):
        notices(*notice)
    notices.sites(specs)  # the next one adds it back, within the notice's lifetime
    with pytest.raises(Forbidden, match="replayed"):
        notices(*notice)
    assert master.published == ["alpha"]


def test_a_removed_sites_verifier_is_forgotten_once_its_notices_are_too_old(
        tmp_path: Path, routed: tuple[HostNotices, Master]) -> None:
    notices, _ = routed
    specs = list(load(tmp_path / "cgirt.toml").sites.values())
    notices.sites([s for s in specs if s.name != "alpha"], now=0.0)
    assert len(notices._gone) == 1
    notices.sites([s for s in specs if s.name != "alpha"], now=2 * MAX_SKEW + 1)
    assert notices._gone == {}


def test_the_secret_is_read_with_the_file_and_stays_out_of_the_workers_config(
        tmp_path: Path) -> None:
    plan = load(write_host(tmp_path))
    assert plan.sites["alpha"].secret == SECRET_A and plan.sites["gamma"].secret is None
    assert plan.sites["alpha"].runner.publish_secret == tmp_path / "a.secret"  # the path only


@pytest.mark.parametrize("host, extra_a, b_dir, expected", [
    ("", "", "b", None),
    ('status_listen = "off"', "", "b",
     "{path}:6: publish_secret needs the host's status address to take notices on"),
    ("", "", "a", "{path}:11: site 'alpha' also has a directory named 'a' and a publish_secret"),
])
def test_problems_with_the_notices_have_their_file_and_line(
        tmp_path: Path, host: str, extra_a: str, b_dir: str, expected: str | None) -> None:
    path = write_host(tmp_path, host, extra_a, b_dir)
    problems, _ = ConfigFile(path).problems(None)  # what `cgirt config check` says
    if expected is None:
        assert problems == []
        load(path)
        return
    line = expected.format(path=path)
    assert any(p.startswith(line) for p in problems), problems
    with pytest.raises(HostConfigError) as caught:
        load(path)
    assert any(p.startswith(line) for p in caught.value.problems), caught.value.problems


def test_an_unreadable_secret_of_a_drop_in_is_named_with_its_file(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "site").mkdir()
    (tmp_path / "cgirt.toml").write_text('[host]\nsites_dir = "d"\n')
    (tmp_path / "d" / "s.toml").write_text(
        f'site = "{tmp_path}/site"\nlisten = "unix:{tmp_path}/s.sock"\n'
        f'publish_secret = "{tmp_path}/missing"\n')
    with pytest.raises(HostConfigError) as caught:
        load(tmp_path / "cgirt.toml")
    assert f"{tmp_path}/d/s.toml:3: publish_secret: cannot read {tmp_path}/missing" in \
        "\n".join(caught.value.problems)


def test_each_slots_epoch_is_its_own_and_shared_with_a_forked_worker() -> None:
    table = ActivityTable(4)
    table.publishes(2).set(1)
    table.publishes(1).bump()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # a worker of slot 2, forked before the master's bumps
        os.read(r, 1)
        os._exit(table.publishes(2).read())
    table.publishes(2).bump()
    table.publishes(2).bump()
    os.write(w, b"x")
    _, status = os.waitpid(pid, 0)
    os.close(r)
    os.close(w)
    assert os.waitstatus_to_exitcode(status) == 3
    assert [table.publishes(s).read() for s in range(4)] == [0, 1, 3, 0]


def test_a_worker_started_within_the_publish_window_starts_forced(tmp_path: Path) -> None:
    from cgirt.host.master import SitePool

    pool = SitePool(load(write_host(tmp_path, extra_a='publish_window = "30s"')).sites["alpha"])
    assert not pool.in_publish_window(100.0)  # never noticed
    pool.noticed_at = 100.0
    assert pool.in_publish_window(129.9) and not pool.in_publish_window(130.0)
