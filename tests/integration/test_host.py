"""`cgirt host`: one master for several sites behind a real nginx, workers on demand.

Workers are the zygote's children; which site a worker serves is read from /proc (the
listening socket it holds), never from the master's own account.
"""

from __future__ import annotations

import concurrent.futures
import ftplib
import io
import json
import os
import pwd
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.conftest import make_site
from tests.support.http import HttpResponse, fetch
from tests.support.procs import Proc, children_of, wait_for
from tests.support.servers import DEPLOY, REPO, Host, Nginx, make_traversable, nginx_server_block

pytestmark = pytest.mark.integration

PID_SCRIPT = 'import os\nprint("Content-Type: text/plain")\nprint()\nprint(os.getpid())\n'
SLOW_PID = ('import os, time\ntime.sleep(float(os.environ["QUERY_STRING"] or 1))\n'
            'print("Content-Type: text/plain")\nprint()\nprint(os.getpid())\n')


class Stack:
    """Sites under tmp_path, one `cgirt host` for all, one nginx with a server block each."""

    def __init__(self, tmp_path: Path, host_table: str, sites: dict[str, str],
                 unconfigured: tuple[str, ...] = ()) -> None:
        """`unconfigured` sites exist, with their nginx server block, not in cgirt's file."""
        self.tmp = tmp_path
        self.sites: dict[str, Path] = {}
        lines = ["[host]", host_table, "allow_root_site = true", ""]
        for name in [*sites, *unconfigured]:
            site = make_site(tmp_path / name)
            (site / "cgi-bin" / "slowpid.py").write_text(SLOW_PID)
            self.sites[name] = site
        for name, extra in sites.items():
            lines += [f"[sites.{name}]", f'site = "{self.sites[name]}"',
                      f'listen = "{self.backend(name)}"', extra, ""]
        (tmp_path / "sites.d").mkdir()
        self.config = tmp_path / "cgirt.toml"
        self.config.write_text("\n".join(lines))
        self.host: Host | None = None
        self.nginx: Nginx | None = None

    def backend(self, name: str) -> str:
        return f"unix:{self.tmp}/{name}.sock"

    def front(self, name: str) -> str:
        return f"unix:{self.tmp}/{name}-http.sock"

    def start(self) -> "Stack":
        self.host = Host(self.config, self.tmp)
        self.nginx = Nginx(self.tmp / "nginx", [
            nginx_server_block(site, self.front(n), self.backend(n)) for n, site in self.sites.items()])
        for n in self.sites:
            self.nginx.wait(self.front(n))
        return self

    def get(self, name: str, path: str) -> HttpResponse:
        return fetch(self.front(name), path)

    def workers(self, name: str) -> list[int]:
        assert self.host is not None
        return self.host.workers_of(self.backend(name))

    def reload(self) -> None:
        assert self.host is not None
        self.host.proc.send_signal(signal.SIGHUP)
        self.host.wait_notified("RELOADING=1")
        self.host.wait_notified("READY=1")

    def log(self) -> str:
        assert self.host is not None
        return self.host.proc.output()

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        if self.host is not None:
            self.host.stop()


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Callable[..., Stack]]:
    made: list[Stack] = []

    def make(host_table: str, unconfigured: tuple[str, ...] = (), **sites: str) -> Stack:
        s = Stack(tmp_path, host_table, sites, unconfigured)
        made.append(s)
        return s.start()

    yield make
    for s in made:
        s.stop()


def test_ondemand_starts_a_worker_for_the_first_request_and_ends_it_when_idle(
        stack: Callable[..., Stack]) -> None:
    s = stack("idle_timeout = 3", a="", b='pm = "static"\nworkers = 2')  # 3 s: a loaded machine
    static = wait_for(lambda: len(s.workers("b")) == 2 and s.workers("b"), 20, "static workers")
    assert s.workers("a") == []  # no worker before the first request
    resp = s.get("a", "/cgi-bin/pid.py")
    assert resp.status == 200
    served_by = int(resp.body)
    assert s.workers("a") == [served_by]
    assert s.get("a", "/cgi-bin/pid.py").body == resp.body  # the same worker, while busy
    wait_for(lambda: not s.workers("a"), 20, "the idle worker to exit")
    assert not os.path.exists(f"/proc/{served_by}")
    assert sorted(s.workers("b")) == sorted(static)  # static workers stay
    resp = s.get("a", "/cgi-bin/pid.py")  # and a cold start again
    assert resp.status == 200 and int(resp.body) != served_by


def test_zygote_is_the_workers_parent_and_never_ran_site_code(
        stack: Callable[..., Stack], tmp_path: Path) -> None:
    s = stack("idle_timeout = 30", a="", b="")
    for name, site in s.sites.items():
        # A site module that notes every process importing it.
        (site / "cgi-bin" / "noted.py").write_text(
            f"import os\nwith open({str(tmp_path / 'imports.log')!r}, 'a') as f:\n"
            "    f.write(f'{os.getpid()}\\n')\n")
        (site / "cgi-bin" / "imports.py").write_text("import noted\n" + PID_SCRIPT)
        assert s.get(name, "/cgi-bin/imports.py").status == 200
    assert s.host is not None
    zygote = s.host.zygote
    importers = {int(p) for p in (tmp_path / "imports.log").read_text().split()}
    assert importers == set(s.workers("a")) | set(s.workers("b"))
    assert zygote not in importers and s.host.pid not in importers
    # The zygote holds no site's socket, and the site's workers none but their own.
    zygote_fds = [os.readlink(f) for f in Path(f"/proc/{zygote}/fd").iterdir()]
    assert not any(str(site) in fd for site in s.sites.values() for fd in zygote_fds)
    assert s.host.workers_of(s.backend("a")) == s.workers("a")
    assert not set(s.workers("a")) & set(s.workers("b"))


def _listening_sockets(pid: int) -> set[str]:
    """The inodes of the listening unix sockets `pid` holds."""
    listening = {f[6] for f in (line.split() for line in
                                Path("/proc/net/unix").read_text().splitlines()[1:])
                 if len(f) >= 7 and f[3] == "00010000"}  # __SO_ACCEPTCON
    links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    return {link[8:-1] for link in links if link.startswith("socket:[")} & listening


def test_a_zygote_started_again_after_a_crash_is_as_clean_as_the_first(
        stack: Callable[..., Stack]) -> None:
    s = stack("idle_timeout = 30", a="", b="")
    assert s.host is not None
    assert s.get("a", "/cgi-bin/pid.py").status == 200
    first = s.host.zygote
    assert not _listening_sockets(first)
    os.kill(first, signal.SIGKILL)  # its workers die with it
    s.host.zygote = int(wait_for(lambda: [p for p in children_of(s.host.pid) if p != first],
                                 20, "a new zygote")[0])  # type: ignore[index]
    wait_for(lambda: "the zygote died" in s.log(), 20, "the master to say so")
    for name in s.sites:
        assert s.get(name, "/cgi-bin/pid.py").status == 200
    assert not _listening_sockets(s.host.zygote)
    a, b = s.workers("a"), s.workers("b")
    assert a and b and not set(a) & set(b)  # each worker holds its own site's socket only
    for pid in (*a, *b):
        assert len(_listening_sockets(pid)) == 1


def _private_dirty_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Private_Dirty:"):
            return int(line.split()[1])
    raise AssertionError(f"no Private_Dirty for {pid}")


def _spare(s: Stack, not_: set[int]) -> int:
    assert s.host is not None
    every = set(s.host.worker_pids())
    spares = [p for p in children_of(s.host.zygote) if p not in every and p not in not_]
    return spares[0] if len(spares) == 1 else 0


def test_the_spare_copies_ahead_the_pages_the_last_worker_copied(
        stack: Callable[..., Stack]) -> None:
    s = stack("idle_timeout = 60", a="", b="", c="")
    first = int(wait_for(lambda: _spare(s, set()), 20, "the first spare"))
    clean = _private_dirty_kib(first)  # nothing learned yet: a fresh fork's few pages
    a = int(s.get("a", "/cgi-bin/pid.py").body)
    assert a == first  # the spare took the order
    learned_from = _private_dirty_kib(a)
    assert learned_from > clean + 2048, (clean, learned_from)  # a worker copies megabytes
    b = int(s.get("b", "/cgi-bin/pid.py").body)  # the next spare learns from a's pages
    third = int(wait_for(lambda: _spare(s, {a, b}), 20, "the spare after b's"))
    # It copies ahead while it waits: most of what `a` copied, before any order.
    wait_for(lambda: _private_dirty_kib(third) > clean + learned_from // 2, 20,
             f"the spare to copy ahead (clean {clean} KiB, a worker {learned_from} KiB)")
    c = s.get("c", "/cgi-bin/pid.py")
    assert c.status == 200 and int(c.body) == third  # and it serves as any worker
    # The zygote reads its spares' page maps; no worker holds one (another site's process).
    for worker in (a, b, third):
        held = [os.readlink(fd) for fd in Path(f"/proc/{worker}/fd").iterdir()]
        assert not [h for h in held if h.endswith("/pagemap")], held


def burst(s: Stack, names: list[str], per_site: int) -> tuple[list[HttpResponse], dict[str, int]]:
    """`per_site` concurrent slow requests to each site; the most workers seen meanwhile."""
    most = {"all": 0, **{n: 0 for n in s.sites}}
    done = False

    def sample() -> None:
        assert s.host is not None
        while not done:
            for n in s.sites:
                most[n] = max(most[n], len(s.workers(n)))
            most["all"] = max(most["all"], len(s.host.worker_pids()))

    with concurrent.futures.ThreadPoolExecutor(len(names) * per_site + 1) as pool:
        watcher = pool.submit(sample)
        requests = [pool.submit(s.get, name, "/cgi-bin/slowpid.py?0.5")
                    for _ in range(per_site) for name in names]
        try:
            results = [r.result(timeout=120) for r in requests]
        finally:
            done = True
        watcher.result(timeout=30)
    return results, most


def test_max_workers_and_max_workers_total_hold_under_a_burst(stack: Callable[..., Stack]) -> None:
    s = stack("max_workers_total = 3\nidle_timeout = 30", a="max_workers = 2", b="max_workers = 3")
    results, most = burst(s, ["a"], 6)
    assert [r.status for r in results] == [200] * 6  # everyone served, some after a wait
    assert most["a"] == 2 and len({int(r.body) for r in results}) == 2
    log = s.log()
    assert log.count("site a reached max_workers (2)") == 1, log  # once a minute at most
    results, most = burst(s, ["a", "b"], 6)
    assert [r.status for r in results] == [200] * 12
    assert most["all"] == 3 and most["a"] <= 2
    assert "host reached max_workers_total (3)" in s.log()


def test_fork_mode_templates_only_where_and_when_fork_mode_is_used(
        stack: Callable[..., Stack]) -> None:
    s = stack("idle_timeout = 30", a="", b='mode = "fork"')
    assert s.get("a", "/cgi-bin/pid.py").status == 200
    (worker,) = s.workers("a")
    assert s.host is not None and children_of(worker) == []  # persistent only: no template
    resp = s.get("a", "/cgi-bin/forked/clean.py")  # forked/ asks for fork mode
    word, _, parent = resp.body.split()
    assert word == b"clean" and int(parent) != worker  # a template's child, made when needed
    # It was made after a script had run here: this worker retires once the request is
    # done, and the site's next workers make theirs at boot, while clean.
    wait_for(lambda: worker not in s.workers("a"), 20, "the worker to retire")
    resp = s.get("a", "/cgi-bin/forked/clean.py")
    (worker,) = s.workers("a")
    word, pid, parent = resp.body.split()
    assert word == b"clean" and int(parent) in children_of(worker)
    # A site whose mode is fork has its template from the start.
    assert s.get("b", "/cgi-bin/pid.py").status == 200
    (worker,) = s.workers("b")
    assert len(children_of(worker)) == 1


def test_one_sites_crashes_boot_failures_timeouts_and_memory_leave_the_others_alone(
        stack: Callable[..., Stack]) -> None:
    s = stack("idle_timeout = 30\nmax_workers_total = 14", good="max_workers = 2",
              crashy="max_workers = 2", boots_badly='memory_limit = "1M"',
              slow='timeout = 1\nkill_grace = 0.5', hungry='memory_limit = "300M"')
    faults = ([("crashy", "/cgi-bin/os_exit.py")] * 12 + [("slow", "/cgi-bin/loop_forever.py")] * 3
              + [("hungry", "/cgi-bin/memory_bomb.py")] * 3)

    def fault(name: str, path: str) -> int:
        try:
            return fetch(s.front(name), path, timeout=10).status
        except OSError:
            return 0  # the boot-failing site never answers: nginx is still waiting

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        hung = pool.submit(fault, "boots_badly", "/cgi-bin/hello.py")
        bad = [pool.submit(fault, name, path) for name, path in faults]
        good = [pool.submit(s.get, "good", "/cgi-bin/hello.py") for _ in range(40)]
        assert [f.result(timeout=120).status for f in good] == [200] * 40
        assert {f.result(timeout=120) for f in bad} <= {500, 502, 504}
        assert hung.result(timeout=60) in (0, 504)
    log = s.log()
    assert "site boots_badly: a worker failed to boot (exit 3); retrying in 1 s" in log
    assert "site boots_badly: a worker failed to boot (exit 3); retrying in 2 s" in log
    assert "site crashy: workers keep crashing (5 in 10 s); pausing it for 1 s" in log
    assert "site slow: worker" in log and "request exceeded its deadline" in log
    assert "site good:" not in log.split("cgirt host:", 1)[1]  # nothing happened to it
    assert "MemoryError" in (s.sites["hungry"] / ".cgirt" / "logs" / "error.log").read_text()
    assert s.get("hungry", "/cgi-bin/hello.py").status == 200  # the site itself recovers
    assert s.get("good", "/cgi-bin/hello.py").status == 200


def test_a_site_owned_by_root_is_refused_unless_allowed(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("ownership only matters when the host runs as root")
    s = Stack(tmp_path, "idle_timeout = 30", {"allowed": "", "refused": ""})
    s.config.write_text(s.config.read_text().replace("allow_root_site = true", "")
                        .replace('[sites.allowed]', '[sites.allowed]\nallow_root_site = true'))
    try:
        s.start()
        assert s.get("allowed", "/cgi-bin/hello.py").status == 200
        assert s.get("refused", "/cgi-bin/hello.py").status == 502  # nothing listens
        assert (f"site refused: not served: {s.sites['refused']} is owned by root, so its "
                "scripts would run as root: refused") in s.log()
    finally:
        s.stop()


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory other users can reach: pytest's own base directory is not (pytest takes
    o+x back from it whenever a parallel run starts, so make_traversable cannot hold)."""
    with tempfile.TemporaryDirectory(prefix="cgirt-host-") as d:
        os.chmod(d, 0o711)
        yield Path(d)


def test_sites_owned_by_different_users_cannot_read_each_others_files(shared_tmp: Path) -> None:
    tmp_path = shared_tmp
    if os.geteuid() != 0:
        pytest.skip("privilege separation needs root")
    s = Stack(tmp_path, "idle_timeout = 30", {"a": "", "b": ""})
    s.config.write_text(s.config.read_text().replace("allow_root_site = true", ""))
    owners = {"a": pwd.getpwnam("nobody"), "b": pwd.getpwnam("www-data")}
    for name, site in s.sites.items():
        (site / "data.txt").write_text(f"private data of {name}\n")
        owner = owners[name]
        for p in [site, *site.rglob("*")]:
            os.chown(p, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
        os.chmod(site, 0o711)  # as INSTALL.md asks
        os.chmod(site / "cgi-bin", 0o700)
        os.chmod(site / "data.txt", 0o600)
        make_traversable(site)
    make_traversable(Path(os.path.realpath(sys.executable)))
    try:
        s.start()
        for me, other in (("a", "b"), ("b", "a")):
            uid, gid = owners[me].pw_uid, owners[me].pw_gid
            mine = s.get(me, f"/cgi-bin/whoami.py?{s.sites[me] / 'data.txt'}")
            theirs = s.get(me, f"/cgi-bin/whoami.py?{s.sites[other] / 'data.txt'}")
            assert mine.body.decode() == f"{uid} {gid} readable\n"
            assert theirs.body.decode() == f"{uid} {gid} PermissionError\n"
            script = s.get(me, f"/cgi-bin/whoami.py?{s.sites[other] / 'cgi-bin' / 'hello.py'}")
            assert script.body.decode() == f"{uid} {gid} PermissionError\n"
    finally:
        s.stop()


def test_sighup_adds_a_site_from_a_drop_in_and_serves_it_at_once(stack: Callable[..., Stack]) -> None:
    s = stack('idle_timeout = 30\nsites_dir = "sites.d"', unconfigured=("c",), a="")
    assert s.get("c", "/cgi-bin/hello.py").status == 502  # nothing listens yet
    (s.tmp / "sites.d" / "c.toml").write_text(
        f'site = "{s.sites["c"]}"\nlisten = "{s.backend("c")}"\n')
    s.reload()
    assert s.get("c", "/cgi-bin/hello.py").body == b"Hello, world!\n"
    assert "SIGHUP: site c added" in s.log()


def test_sighup_removes_a_site_after_its_requests_finish(stack: Callable[..., Stack]) -> None:
    s = stack("idle_timeout = 30", a="", b="")
    assert s.get("a", "/cgi-bin/hello.py").status == 200
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        in_flight = pool.submit(s.get, "b", "/cgi-bin/slowpid.py?2")
        (worker,) = wait_for(lambda: s.workers("b"), 20, "b's worker")
        wait_for(lambda: s.host is not None and _busy(s, worker), 20, "the request to start")
        s.config.write_text(s.config.read_text().split("[sites.b]")[0])
        s.reload()
        resp = in_flight.result(timeout=60)
    assert resp.status == 200 and int(resp.body) == worker  # finished, by the same worker
    wait_for(lambda: not os.path.exists(f"/proc/{worker}"), 20, "b's worker to exit")
    assert s.get("b", "/cgi-bin/hello.py").status == 502
    assert not os.path.exists(s.backend("b")[5:])
    assert s.get("a", "/cgi-bin/hello.py").status == 200


def test_sighup_replaces_a_changed_sites_workers_and_leaves_the_others(
        stack: Callable[..., Stack]) -> None:
    s = stack("idle_timeout = 30", a="", b='pm = "static"\nworkers = 2')
    old_b = wait_for(lambda: len(s.workers("b")) == 2 and s.workers("b"), 20, "b's workers")
    a = int(s.get("a", "/cgi-bin/pid.py").body)
    s.config.write_text(s.config.read_text().replace("workers = 2", "workers = 1"))
    s.reload()
    new_b = wait_for(lambda: (w := s.workers("b")) and not set(w) & set(old_b) and w, 20,
                     "b's new workers")
    assert len(new_b) == 1
    assert int(s.get("a", "/cgi-bin/pid.py").body) == a  # a untouched


def test_a_broken_drop_in_changes_nothing_and_is_logged_with_its_line(
        stack: Callable[..., Stack]) -> None:
    s = stack('idle_timeout = 30\nsites_dir = "sites.d"', unconfigured=("c",), a="")
    a = int(s.get("a", "/cgi-bin/pid.py").body)
    (s.tmp / "sites.d" / "c.toml").write_text(
        f'site = "{s.sites["c"]}"\nlisten = "{s.backend("c")}"\n')
    (s.tmp / "sites.d" / "d.toml").write_text('site = "/nowhere"\n\nworkers = "many"\n')
    s.config.write_text(s.config.read_text().replace("[sites.a]", "[sites.a]\ntimeout = 5"))
    s.reload()
    log = s.log()
    drop_in = s.tmp / "sites.d" / "d.toml"
    assert f"SIGHUP: {drop_in}:3: workers must be a whole number of at least 1, not 'many'" in log
    assert f"SIGHUP: {drop_in}:1: site directory /nowhere does not exist" in log
    assert "configuration not reloaded; everything runs as before" in log
    assert int(s.get("a", "/cgi-bin/pid.py").body) == a  # not replaced: a's change waits too
    assert s.get("c", "/cgi-bin/hello.py").status == 502  # not added
    check = subprocess.run([sys.executable, "-m", "cgirt", "config", "check", str(s.config)],
                           capture_output=True, text=True, timeout=60)
    assert f"{drop_in}:3: workers must be" in check.stderr and check.returncode == 2
    drop_in.unlink()
    s.reload()
    assert s.get("c", "/cgi-bin/hello.py").status == 200
    wait_for(lambda: a not in s.workers("a"), 20, "a's old worker to be replaced")


def _busy(s: Stack, worker: int) -> bool:
    """A script runs in its own directory: the worker is inside one of b's."""
    try:
        return os.readlink(f"/proc/{worker}/cwd") == str(s.sites["b"] / "cgi-bin")
    except OSError:
        return False


def test_the_host_recipe_of_install_md_as_written(shared_tmp: Path) -> None:
    """cgirt-host.service's command line with the example cgirt.toml and the example
    drop-in, one nginx server block per site, the one FTP gateway; sites owned by users."""
    from tests.integration.test_install import cgirt, command, example_config, unit

    tmp_path = shared_tmp
    if os.geteuid() != 0:
        pytest.skip("the recipe runs as root")
    service = unit("cgirt-host.service")
    assert service["Type"] == "notify" and service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    example = make_site(tmp_path / "example")
    config = example_config(tmp_path, example)
    blog = make_site(tmp_path / "blog")
    (tmp_path / "sites.d").mkdir()
    (tmp_path / "sites.d" / "blog.toml").write_text(
        (DEPLOY / "cgirt-host-site.toml").read_text().replace("/srv/sites/blog", str(blog))
        .replace("/run/cgirt/", f"{tmp_path}/"))
    sites = {"example": example, "shop": tmp_path / "shop", "blog": blog}
    (sites["shop"] / "cgi-bin" / "pid.py").write_text(PID_SCRIPT)
    owners = {"example": "nobody", "shop": "www-data", "blog": "nobody"}
    for name, site in sites.items():
        owner = pwd.getpwnam(owners[name])
        for p in [site, *site.rglob("*")]:
            os.chown(p, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
        os.chmod(site, 0o711)
        os.chmod(site / "cgi-bin", 0o700)
        make_traversable(site)
    make_traversable(Path(os.path.realpath(sys.executable)))
    assert cgirt("config", "check", str(config)).returncode == 0
    add = cgirt("user", "add", "blog", "--site", str(blog), "--users", str(tmp_path / "users.json"),
                stdin="s3cret-pass\n")
    assert add.returncode == 0, add.stderr
    host = Host(config, tmp_path, command(service, config)[1:-1])
    ftp_unit = unit("cgirt-ftp.service")
    port_file = tmp_path / "ftp.port"
    gateway = Proc(command(ftp_unit, config) + ["--port-file", str(port_file)],
                   tmp_path / "ftp.log", cwd=REPO)
    nginx = Nginx(tmp_path / "nginx", [nginx_server_block(site, f"unix:{tmp_path}/{n}-http.sock",
                                                          f"unix:{tmp_path}/{n}.sock")
                                       for n, site in sites.items()])
    try:
        for n in sites:
            nginx.wait(f"unix:{tmp_path}/{n}-http.sock")
        assert host.worker_pids() == []  # ondemand, the example's default
        resp = fetch(f"unix:{tmp_path}/example-http.sock", "/cgi-bin/whoami.py?/etc/shadow")
        nobody = pwd.getpwnam("nobody")
        assert resp.body.decode() == f"{nobody.pw_uid} {nobody.pw_gid} PermissionError\n"
        assert fetch(f"unix:{tmp_path}/shop-http.sock", "/cgi-bin/pid.py").status == 200
        status = cgirt("status", "--config", str(config), "shop", "--json")  # the host's socket
        assert status.returncode == 0, status.stderr
        assert [(p["pool"], p["accepted conn"]) for p in json.loads(status.stdout)["pools"]] == [
            ("shop", 1)]
        wait_for(lambda: port_file.exists() and port_file.read_text().strip(), 30, "the gateway")
        address, port = port_file.read_text().split()
        client = ftplib.FTP_TLS()
        client.connect(address, int(port), timeout=30)
        client.login("blog", "s3cret-pass")
        client.prot_p()
        client.storbinary("STOR cgi-bin/new.py", io.BytesIO(
            b'print("Content-Type: text/plain")\nprint()\nprint("published")\n'))
        client.quit()
        assert fetch(f"unix:{tmp_path}/blog-http.sock", "/cgi-bin/new.py").body == b"published\n"
        host.proc.send_signal(signal.SIGHUP)  # systemctl reload
        host.wait_notified("READY=1")
        assert fetch(f"unix:{tmp_path}/blog-http.sock", "/cgi-bin/new.py").status == 200
    finally:
        nginx.stop()
        assert gateway.stop(signal.SIGTERM, timeout=float(ftp_unit["TimeoutStopSec"])) == 0
        assert host.stop(signal.SIGTERM) == 0


def test_dynamic_keeps_spare_workers_and_lets_the_extra_ones_go(stack: Callable[..., Stack]) -> None:
    s = stack("idle_timeout = 1", a='pm = "dynamic"\nmin_spare = 1\nmax_spare = 1\nmax_workers = 3')
    (spare,) = wait_for(lambda: s.workers("a"), 20, "the spare worker")  # before any request
    results, most = burst(s, ["a"], 3)
    assert [r.status for r in results] == [200] * 3 and most["a"] == 3
    wait_for(lambda: len(s.workers("a")) == 1, 30, "the extra workers to exit")
    assert s.get("a", "/cgi-bin/pid.py").status == 200
