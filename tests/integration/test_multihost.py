"""Several runner hosts on a shared filesystem: once the FTP client has its 226, every host
runs the new code.

The machines are network namespaces on this one (tests/support/cluster.py): a file server,
two runner hosts and the FTP gateway, each with its own mount of the volume, so each has its
own attribute cache, as separate machines would. Every test runs on each filesystem that
INSTALL.md documents: sshfs (sshd on the file server) and GlusterFS (glusterd, one brick).
nginx, in this namespace, balances over both runners (deploy/nginx-cgirt-upstream.conf).
Fixed ports are safe here: each namespace is private to the test, nothing else listens in it.
"""

from __future__ import annotations

import ftplib
import io
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import pytest

from cgirt.runner import freshness
from cgirt.runner.cache import RACY_SECONDS
from tests.support.cluster import FILESYSTEMS, Lan, file_server
from tests.support.http import fetch
from tests.support.procs import Proc, children_of, wait_for
from tests.support.servers import DEPLOY, IS_ROOT, REPO, Nginx, connectable, free_port

PASSWORD = "correct horse battery"
SCRIPTS = 20  # rotated, so each was last changed longer ago than RACY_SECONDS
HITS = 4  # requests after each 226: nginx alternates them over both hosts
RUNNER_PORT, STATUS_PORT, FTP_PORT = 9000, 9001, 2121



def script(version: str) -> bytes:
    # The runner master's pid names the host that answered.
    return (f'import os\nprint("Content-Type: text/plain")\nprint()\n'
            f'print("{version}", os.getppid())\n').encode()


@dataclass
class Cluster:
    lan: Lan
    workdir: Path
    export: Path
    mounts: dict[str, Path]
    secret: Path
    runner: str = "serve"  # or "host": each machine's runner is a `cgirt host` master
    web: str = ""
    masters: dict[str, int] = field(default_factory=dict)  # the workers' parent on each
    runners: dict[str, int] = field(default_factory=dict)  # the runner process on each
    versions: dict[int, str] = field(default_factory=dict)
    changed: dict[int, float] = field(default_factory=dict)

    def status(self, machine: str) -> str:
        return f"{self.lan.addresses[machine]}:{STATUS_PORT}"

    def start_runner(self, machine: str) -> None:
        address = self.lan.addresses[machine]
        if self.runner == "host":
            # The site's directory is "site": the name the gateway's notices give.
            config = self.workdir / f"host-{machine}" / "cgirt.toml"
            config.parent.mkdir()
            config.write_text(
                f'[host]\nstatus_listen = "{self.status(machine)}"\n\n'
                f'[sites.site]\nsite = "{self.mounts[machine] / "site"}"\n'
                f'listen = "{address}:{RUNNER_PORT}"\npm = "static"\nworkers = 2\n'
                f'host_name = "{machine}"\npublish_secret = "{self.secret}"\n'
                "allow_root_site = true\n")  # the sftp server writes the files as root
            argv = ["host", "--config", str(config)]
        else:
            argv = ["serve", "--site", str(self.mounts[machine] / "site"),
                    "--listen", f"{address}:{RUNNER_PORT}", "--workers", "2",
                    "--status-listen", self.status(machine), "--host-name", machine,
                    "--publish-secret", str(self.secret)]
        proc = Proc([*self.lan.enter(machine), sys.executable, "-m", "cgirt", *argv],
                    self.workdir / f"runner-{machine}.log", cwd=REPO)
        self.lan.on_close(proc.stop)
        wait_for(lambda: not proc.alive() or connectable(self.status(machine)), 30,
                 f"the runner of {machine}")
        assert proc.alive(), proc.output()
        self.runners[machine] = proc.pid
        # A host's workers are the zygote's children, the master's only child.
        self.masters[machine] = (proc.pid if self.runner == "serve" else
                                 wait_for(lambda: children_of(proc.pid)[:1], 30, "the zygote")[0])

    def start_gateway(self, *extra: str) -> tuple[Proc, str]:
        users = self.workdir / "users.json"
        if not users.exists():
            subprocess.run([sys.executable, "-m", "ftp_gateway", "user", "add", "alice",
                            "--site", str(self.mounts["gw"] / "site"), "--users", str(users)],
                           input=PASSWORD + "\n", text=True, check=True, capture_output=True,
                           timeout=60, cwd=REPO)
        address = f"{self.lan.addresses['gw']}:{FTP_PORT}"
        log = self.workdir / f"gateway-{len(self.lan._undo)}.log"
        proc = Proc([*self.lan.enter("gw"), sys.executable, "-m", "ftp_gateway", "ftp",
                     "--users", str(users), "--listen", address, "--auth-failed-delay", "0",
                     "--log-file", str(log), *extra], self.workdir / "gateway.out", cwd=REPO)
        self.lan.on_close(proc.stop)
        wait_for(lambda: not proc.alive() or connectable(address), 30, "the FTP gateway")
        assert proc.alive(), proc.output()
        return proc, str(log)

    def publish(self, client: ftplib.FTP, k: int, version: str) -> str:
        # Old enough that the runner trusts the stat signature alone: the content check of a
        # freshly changed file would hide a stale attribute cache.
        wait_for(lambda: time.time() - self.changed.get(k, 0) > RACY_SECONDS + 0.5, 10,
                 "the script to age")
        reply = client.storbinary(f"STOR cgi-bin/s{k}.py", io.BytesIO(script(version)))
        self.versions[k] = version
        self.changed[k] = time.time()
        return reply

    def get(self, k: int) -> tuple[str, int]:
        return self.get_path(f"/cgi-bin/s{k}.py")

    def get_path(self, path: str) -> tuple[str, int]:
        resp = fetch(self.web, path, timeout=30)
        assert resp.status == 200, resp.body
        version, master = resp.body.decode().split()
        return version, int(master)

    def rounds(self, client: ftplib.FTP, count: int, tag: str,
               until_stale: bool = False) -> tuple[int, list[str]]:
        """`count` publishes, each followed at once by requests to both hosts: the stale
        answers, and the 226 replies; with `until_stale`, no more after the first stale one."""
        stale, replies = 0, []
        for i in range(count):
            k = i % SCRIPTS
            # Each host has the current version cached (and checks it is the current one).
            warm = [self.get(k) for _ in range(HITS)]
            assert {v for v, _ in warm} == {self.versions[k]}, warm
            version = f"{tag}{i}"
            replies.append(self.publish(client, k, version))
            answers = [self.get(k) for _ in range(HITS)]
            assert {m for _, m in answers} == set(self.masters.values()), \
                "the requests did not reach both hosts"
            stale += sum(v != version for v, _ in answers)
            if until_stale and stale:
                break
        return stale, replies

    def publish_rounds(self, count: int, tag: str, until_stale: bool = False) -> tuple[int, list[str]]:
        """`rounds` through one FTP session of their own."""
        client = self.ftp()
        try:
            return self.rounds(client, count, tag, until_stale)
        finally:
            client.quit()

    def ftp(self) -> ftplib.FTP:
        client = ftplib.FTP(timeout=60)
        client.connect(self.lan.addresses["gw"], FTP_PORT)
        client.login("alice", PASSWORD)
        return client


# Every test on each filesystem with `cgirt serve` runners; the tests of the notices' path also
# with `cgirt host` runners (on sshfs: the runner kind does not change what the mount does).
WITH_HOST = pytest.mark.parametrize("cluster", [*FILESYSTEMS, "sshfs+host"], indirect=True)


@pytest.fixture(params=FILESYSTEMS)
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cluster]:
    filesystem, _, runner = str(request.param).partition("+")
    if not IS_ROOT:
        message = "*** network namespaces and FUSE mounts need root (./run-tests as root) ***"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    started = time.monotonic()
    lan = Lan(f"{os.getpid() % 10000}", ["r1", "r2", "gw"])
    try:
        server = file_server(filesystem, lan, tmp_path / "files", tmp_path / "export")
        export = server.export
        site = export / "site"
        (site / "cgi-bin").mkdir(parents=True)
        (site / "htdocs").mkdir()
        for k in range(SCRIPTS):
            (site / "cgi-bin" / f"s{k}.py").write_bytes(script("v0"))
        secret = tmp_path / "publish.secret"
        secret.write_text(os.urandom(24).hex() + "\n")
        secret.chmod(0o600)
        mounts = {}
        for machine in ("r1", "r2", "gw"):
            mounts[machine] = server.mount(machine, tmp_path / f"mnt-{machine}")
        c = Cluster(lan, tmp_path, export, mounts, secret, runner or "serve",
                    versions={k: "v0" for k in range(SCRIPTS)},
                    changed={k: time.time() for k in range(SCRIPTS)})
        c.start_runner("r1")
        c.start_runner("r2")
        port = free_port()
        block = ((DEPLOY / "nginx-cgirt-upstream.conf").read_text()
                 .replace("{runner_a}", f"{lan.addresses['r1']}:{RUNNER_PORT}")
                 .replace("{runner_b}", f"{lan.addresses['r2']}:{RUNNER_PORT}")
                 .replace("{listen}", f"127.0.0.1:{port}")
                 .replace("{site}", str(mounts["gw"] / "site")))
        nginx = Nginx(tmp_path / "nginx", [block])
        lan.on_close(nginx.stop)
        c.web = f"127.0.0.1:{port}"
        nginx.wait(c.web)
        print(f"{request.param} cluster up in {time.monotonic() - started:.1f} s")
        yield c
    finally:
        stopping = time.monotonic()
        lan.close()
        print(f"cluster down in {time.monotonic() - stopping:.1f} s")
    assert not [m for m in tmp_path.iterdir() if os.path.ismount(m)]
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"cgirt-{lan.tag}-" not in names


@WITH_HOST
def test_every_host_runs_the_new_code_after_the_226(cluster: Cluster) -> None:
    cluster.start_gateway(  # the runners named for their site, as INSTALL.md has
        "--runners", f"site={cluster.status('r1')},site={cluster.status('r2')}",
        "--publish-secret", str(cluster.secret))
    stale, replies = cluster.publish_rounds(100, "n")
    assert all(r.startswith("226 ") for r in replies), [r for r in replies if "226 " not in r]
    assert stale == 0, f"{stale} stale answers of {100 * HITS}"


@WITH_HOST
def test_without_the_notice_hosts_answer_stale(cluster: Cluster) -> None:
    """The negative control: the same rounds, with a gateway that notifies nobody, until the
    first stale answer (one round in ten or so shows one: a stale answer needs the request to
    come within the mount's one-second attribute cache of the last look-up)."""
    cluster.start_gateway()
    stale, _ = cluster.publish_rounds(80, "u", until_stale=True)
    assert stale > 0, "the mounts' attribute caches did not show: the test above proves nothing"


def test_a_host_that_does_not_answer_is_named_in_the_reply(cluster: Cluster) -> None:
    down = f"{cluster.lan.prefix}.99:{STATUS_PORT}"  # on the network, but no machine there
    _, log = cluster.start_gateway(
        "--runners", f"{cluster.status('r1')},{cluster.status('r2')},{down}",
        "--publish-secret", str(cluster.secret), "--notify-timeout", "1s")
    stale, replies = cluster.publish_rounds(2, "d")
    assert stale == 0  # the hosts that answered serve the new code
    for reply in replies:
        assert reply.startswith("226-"), reply
        assert "NOT yet live on every runner host" in reply, reply
        assert f"{down}: no answer within 1 s" in reply, reply
        assert cluster.status("r1") not in reply
    assert f"not yet live on: {down}" in Path(log).read_text()


@WITH_HOST
def test_a_forged_notice_changes_nothing(cluster: Cluster) -> None:
    forged = fetch(cluster.status("r1"), "/publish?site=site&time=%d&nonce=00" % time.time(),
                   method="POST", headers={"Authorization": "cgirt-hmac " + "0" * 64})
    assert forged.status == 403, forged.body
    cluster.start_gateway()  # notifies nobody: only a real notice would help
    stale, _ = cluster.publish_rounds(80, "f", until_stale=True)
    assert stale > 0


def test_a_forced_stat_sees_what_the_attribute_cache_hides(cluster: Cluster) -> None:
    """The mechanism itself, on a real mount: written through the gateway's mount, looked at
    through a runner host's."""
    written = cluster.mounts["gw"] / "site" / "htdocs" / "probe.txt"
    seen = cluster.mounts["r1"] / "site" / "htdocs" / "probe.txt"
    written.write_text("0")
    cached_stale = forced_stale = 0
    for i in range(1, 11):
        os.stat(seen)  # the runner host looked at it: its attributes are cached
        tmp = written.with_name("probe.tmp")
        tmp.write_text("x" * i)
        os.replace(tmp, written)
        cached_stale += os.stat(seen).st_size != i
        forced_stale += freshness.forced_stat(str(seen)).st_size != i
        assert seen.read_text() == "x" * i  # opened after the forced stat: the new file
    assert forced_stale == 0
    assert cached_stale > 0, "the mount caches no attributes: nothing here to prove"


@WITH_HOST
def test_site_reload_reaches_every_host(cluster: Cluster) -> None:
    cluster.start_gateway(
        "--runners", f"{cluster.status('r1')},{cluster.status('r2')}",
        "--publish-secret", str(cluster.secret))
    before = {m: set(children_of(pid)) for m, pid in cluster.masters.items()}
    assert all(before.values())
    client = cluster.ftp()
    try:
        reply = client.sendcmd("SITE RELOAD")
    finally:
        client.quit()
    assert reply == "200 Runners on 2 of 2 hosts asked to reload their workers.", reply
    for machine, pid in cluster.masters.items():
        wait_for(lambda: len(set(children_of(pid)) - before[machine]) >= 2, 60,
                 f"new workers on {machine}")
        if cluster.runner == "host":  # its zygote's spare child was there before
            log = cluster.workdir / f"runner-{machine}.log"
            assert "site site: reload notice; replacing its workers" in log.read_text()


def test_one_status_shows_every_host(cluster: Cluster) -> None:
    both = f"{cluster.status('r1')},{cluster.status('r2')}"
    out = subprocess.run([sys.executable, "-m", "cgirt", "status", "--address", both, "--full"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 0, out.stderr
    for machine, master in cluster.masters.items():
        assert f"pool:                 site@{cluster.status(machine)}\n" in out.stdout
        for worker in children_of(master):
            assert f"pid:                      {worker}\n" in out.stdout
    down = f"{cluster.lan.prefix}.99:{STATUS_PORT}"
    out = subprocess.run([sys.executable, "-m", "cgirt", "status", "--address",
                          f"{both},{down}", "--json"],
                         capture_output=True, text=True, timeout=60, cwd=REPO)
    assert out.returncode == 4, out
    assert len(json.loads(out.stdout)["pools"]) == 2  # the hosts that answered
    assert f"no status at {down}" in out.stderr


@WITH_HOST
def test_each_host_keeps_its_own_state_and_logs(cluster: Cluster) -> None:
    (cluster.export / "site" / "cgi-bin" / "err.py").write_bytes(
        b'import os, sys\nsys.stderr.write("note from %d\\n" % os.getppid())\n'
        b'print("Content-Type: text/plain")\nprint()\nprint("x", os.getppid())\n')
    masters = {m for _, m in (cluster.get_path("/cgi-bin/err.py") for _ in range(HITS))}
    assert masters == set(cluster.masters.values())
    state = cluster.export / "site" / ".cgirt"
    for machine, master in cluster.masters.items():
        assert (state / f"runner.{machine}.pid").read_text() == f"{cluster.runners[machine]}\n"
        wait_for(lambda: f"note from {master}" in _read(state / "logs" / f"error.{machine}.log"),
                 30, f"{machine}'s error log")
        other = next(m for m in cluster.masters.values() if m != master)
        assert f"note from {other}" not in _read(state / "logs" / f"error.{machine}.log")
    assert not (state / "runner.pid").exists() and not (state / "logs" / "error.log").exists()
    cluster.start_gateway()
    client = cluster.ftp()
    try:
        listed = client.nlst("logs")
        lines: list[str] = []
        client.retrlines("RETR logs/error.r2.log", lines.append)
    finally:
        client.quit()
    assert {"error.r1.log", "error.r2.log"} <= {name.rsplit("/", 1)[-1] for name in listed}
    assert any(f"note from {cluster.masters['r2']}" in line for line in lines)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""
