"""A site's logs under a real nginx and a real runner: the access log's lines, the size bound
against a script flooding stderr, and rotation by the real logrotate with SIGUSR1 while
requests run."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Callable

import pytest

from tests.conftest import make_site
from tests.integration.test_faults import Front, front  # noqa: F401 - the fixture
from tests.support.http import fetch
from tests.support.procs import SIGNAL_NOTER, SignalNoter, wait_for
from tests.support.servers import DEPLOY, Runner, require

pytestmark = pytest.mark.integration

_QUOTED = r'"((?:[^"\\]|\\.)*)"'
COMBINED_PLUS = re.compile(
    r"^(?P<host>\S+) (?P<ident>\S+) (?P<user>\S+) "
    r"\[(?P<time>\d{2}/[A-Z][a-z]{2}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4})\] "
    rf"{_QUOTED} (?P<status>\d{{3}}) (?P<bytes>\d+|-) {_QUOTED} {_QUOTED} "
    r"(?P<duration>\d+\.\d{6}) (?P<pid>\d+) (?P<mode>persistent|fork|exec|-) "
    r"(?P<response_bytes>\d+)$")
ISO_STAMP = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}[+-]\d{2}:\d{2}"


def logs(site: Path) -> Path:
    return site / ".cgirt" / "logs"


def access_lines(site: Path, name: str = "access.log") -> list[str]:
    path = logs(site) / name
    return path.read_text().splitlines() if path.exists() else []


def parse(line: str) -> dict[str, str]:
    m = COMBINED_PLUS.match(line)
    assert m, f"not Combined Log Format plus extras: {line!r}"
    request, referer, agent = m.group(5), m.group(8), m.group(9)
    return {**m.groupdict(), "request": request, "referer": referer, "agent": agent}


def test_access_log_lines_parse_and_carry_status_bytes_and_mode(
        front: Callable[..., Front], site: Path) -> None:
    f = front(workers=2)
    # A worker that meets its first fork-mode request after a script ran in it retires.
    workers = {str(p) for p in f.runner.worker_pids()}
    agent = 'a "quoted" agent\\'
    asked = {
        "GET /cgi-bin/hello.py?a=1&b=2": fetch(f.http, "/cgi-bin/hello.py?a=1&b=2", headers={
            "Referer": "http://example.test/from", "User-Agent": agent}),
        "GET /cgi-bin/nope.py": fetch(f.http, "/cgi-bin/nope.py"),
        "GET /cgi-bin/crash.py": fetch(f.http, "/cgi-bin/crash.py"),
        "GET /cgi-bin/forked/clean.py": fetch(f.http, "/cgi-bin/forked/clean.py"),
        "GET /cgi-bin/shell.sh?x": fetch(f.http, "/cgi-bin/shell.sh?x"),
        "HEAD /cgi-bin/hello.py": fetch(f.http, "/cgi-bin/hello.py", method="HEAD"),
    }
    wait_for(lambda: len(access_lines(site)) >= len(asked), 20, "a line per request")
    lines = {parse(line)["request"]: parse(line) for line in access_lines(site)}
    assert set(lines) == {f"{r} HTTP/1.1" for r in asked}
    modes = {"hello.py": "persistent", "nope.py": "-", "crash.py": "persistent",
             "clean.py": "fork", "shell.sh": "exec"}
    for request, resp in asked.items():
        entry = lines[f"{request} HTTP/1.1"]
        assert int(entry["status"]) == resp.status, request
        assert entry["bytes"] == (str(len(resp.body)) if resp.body else "-"), request
        assert int(entry["response_bytes"]) > len(resp.body), request  # headers included
        assert entry["pid"] in workers and float(entry["duration"]) < 30
        script = request.split()[1].split("?")[0].rsplit("/", 1)[1]
        assert entry["mode"] == modes[script], request
    assert [r.status for r in asked.values()] == [200, 404, 500, 200, 200, 200]
    hello = lines["GET /cgi-bin/hello.py?a=1&b=2 HTTP/1.1"]
    assert hello["bytes"] == "14" and hello["referer"] == "http://example.test/from"
    assert hello["agent"] == 'a \\"quoted\\" agent\\\\'  # escaped: no forged fields
    assert hello["host"] == "unix:"  # nginx's REMOTE_ADDR for a unix-socket client
    # The error log: one timestamp format with its zone, and the request on every line.
    errors = (logs(site) / "error.log").read_text().splitlines()
    crash = [line for line in errors if "ZeroDivisionError" in line]
    assert crash and all(re.match(rf"^\[{ISO_STAMP}\] \[pid \d+\] "
                                  r"\[GET /cgi-bin/crash\.py\] cgi-bin/crash\.py: ", line)
                         for line in crash), crash
    assert re.search(rf"^{ISO_STAMP} \[\d+\] INFO cgirt: serving ", f.runner.proc.output(), re.M)


def test_access_log_can_be_turned_off(
        site: Path, tmp_path: Path, start_runner: Callable[..., Runner]) -> None:
    from tests.support.fcgi import cgi_params, request
    config = tmp_path / "cgirt.toml"
    config.write_text("[runner]\naccess_log = false\n")
    runner = start_runner(site, "--config", str(config), workers=1)
    assert request(runner.address, cgi_params("/cgi-bin/hello.py")).status == 200
    assert request(runner.address, cgi_params("/cgi-bin/crash.py")).status == 500
    assert "ZeroDivisionError" in (logs(site) / "error.log").read_text()  # the line is written
    assert not (logs(site) / "access.log").exists()


FLOOD = """\
import sys
line = "x" * 99
for i in range(int(__import__("os").environ["QUERY_STRING"])):
    sys.stderr.write(line + "\\n")
sys.stderr.write("flood done\\n")
print("Content-Type: text/plain")
print()
print("flooded")
"""


def test_a_stderr_flood_stays_within_the_bound(
        site: Path, tmp_path: Path, start_runner: Callable[..., Runner]) -> None:
    from tests.support.fcgi import cgi_params, request
    # A bound the master can follow on a loaded machine: a writer has a whole bound of
    # output (tens of milliseconds of a flood) to be told to reopen before it drops lines.
    max_bytes, backups, lines = 1_000_000, 2, 300_000  # 30 MB of stderr
    (site / "cgi-bin" / "flood.py").write_text(FLOOD)
    config = tmp_path / "cgirt.toml"
    config.write_text(f"[runner]\nlog_max_size = {max_bytes}\nlog_backups = {backups}\n")
    runner = start_runner(site, "--config", str(config), "--timeout", "120", workers=1)
    resp = request(runner.address, cgi_params("/cgi-bin/flood.py", str(lines)), timeout=120)
    assert resp.status == 200 and resp.body == b"flooded\n"
    # The master rotates a tick after a writer's poke, perhaps after the response: each
    # rotation renames the files one by one, so list them once it is done.
    names = ["error.log", "error.log.1", "error.log.2"]
    wait_for(lambda: sorted(p.name for p in logs(site).iterdir()
                            if p.name.startswith("error.log")) == names, 10, "the rotated logs")
    sizes = {n: (logs(site) / n).stat().st_size for n in names}
    # Rotated by the master within a tick; a writer stops at twice the bound if it is not.
    assert all(size <= 2 * max_bytes + 1000 for size in sizes.values()), sizes
    # Far below what was printed: the bound holds for the flood as a whole.
    assert sum(sizes.values()) <= (backups + 1) * (2 * max_bytes + 1000) < lines * 100 / 4
    # Nothing was dropped (the writer pokes the master, which rotates at once), and the
    # runner keeps logging after rotating: the flood's last line is in a current file.
    text = "".join((logs(site) / n).read_text() for n in names)
    assert "flood done" in text and "lines dropped" not in text
    assert request(runner.address, cgi_params("/cgi-bin/crash.py")).status == 500
    wait_for(lambda: "ZeroDivisionError" in (logs(site) / "error.log").read_text(), 10,
             "a later request's error line")


LOGGED = """\
import os, sys
sys.stderr.write("request %s\\n" % os.environ["QUERY_STRING"])
print("Content-Type: text/plain")
print()
print(os.environ["QUERY_STRING"])
"""


def _ids(text: str, pattern: str) -> list[int]:
    return [int(m) for m in re.findall(pattern, text)]


def logrotate_recipe(sites: Path, tmp_path: Path) -> Path:
    """deploy/logrotate-cgirt as written, for the sites below `sites` and this test's cgirt."""
    conf = tmp_path / "logrotate.conf"
    cgirt = Path(sys.executable).parent / "cgirt"  # the venv's, as /opt/cgirt/bin/cgirt is
    conf.write_text((DEPLOY / "logrotate-cgirt").read_text()
                    .replace("/srv/sites", str(sites)).replace("/opt/cgirt/bin/cgirt", str(cgirt)))
    return conf


def test_logrotate_and_sigusr1_lose_no_line_while_requests_run(
        front: Callable[..., Front], site: Path, tmp_path: Path) -> None:
    binary = require("logrotate")
    (site / "cgi-bin" / "logged.py").write_text(LOGGED)
    f = front(workers=2)
    conf = logrotate_recipe(tmp_path, tmp_path)
    sent: list[int] = []
    failures: list[str] = []
    after_reopen: list[int] = []
    reopened = threading.Event()
    stop = threading.Event()

    def load() -> None:
        i = 0
        while not stop.is_set():
            i += 1
            mark = reopened.is_set()  # read before the request starts
            resp = fetch(f.http, f"/cgi-bin/logged.py?{i}")
            if resp.status != 200 or resp.body != f"{i}\n".encode():
                failures.append(f"{i}: {resp.status} {resp.body[:80]!r}")
            sent.append(i)
            if mark:
                after_reopen.append(i)

    thread = threading.Thread(target=load)
    thread.start()
    try:
        wait_for(lambda: len(access_lines(site)) >= 50, 60, "lines before the rotation")
        subprocess.run([binary, "-s", str(tmp_path / "logrotate.state"), "-f", str(conf)],
                       check=True, capture_output=True, timeout=60)
        wait_for(lambda: "SIGUSR1: log files reopened" in f.runner.proc.output(), 20,
                 "the runner to reopen its logs")
        reopened.set()
        wait_for(lambda: len(after_reopen) >= 50, 60, "requests after the reopen")
    finally:
        stop.set()
        thread.join(60)
    assert not failures, failures[:5]
    wait_for(lambda: len(access_lines(site)) + len(access_lines(site, "access.log.1"))
             >= len(sent), 20, "every request's access line")
    for name, pattern in (("access", r'"GET /cgi-bin/logged\.py\?(\d+) '),
                          ("error", r"logged\.py: request (\d+)")):
        live = _ids((logs(site) / f"{name}.log").read_text(), pattern)
        rotated = _ids((logs(site) / f"{name}.log.1").read_text(), pattern)
        assert rotated, f"{name}.log was not rotated"
        assert sorted(live + rotated) == sorted(sent), f"{name}: lines lost or doubled"
        assert not set(after_reopen) & set(rotated), f"{name}: written to the rotated file"
    assert f.runner.proc.alive()


def test_logrotate_signals_only_each_sites_own_runner(
        start_runner: Callable[..., Runner], tmp_path: Path) -> None:
    """A tenant's runner.pid naming another process: logrotate's run reports the refusal
    and fails, that process gets no SIGUSR1, and the genuine runner's logs are reopened."""
    binary = require("logrotate")
    sites = tmp_path / "sites"
    sites.mkdir()
    real = make_site(tmp_path / "made").rename(sites / "real")
    runner = start_runner(real)
    pid_file = real / ".cgirt" / "runner.pid"
    wait_for(lambda: pid_file.exists() and pid_file.read_text() == f"{runner.pid}\n", 30,
             "the runner's pid file")
    with (logs(real) / "error.log").open("a") as f:
        f.write("a line before the rotation\n")  # notifempty: something to rotate
    tenant = sites / "tenant"
    logs(tenant).mkdir(parents=True)
    (logs(tenant) / "error.log").write_text("the tenant's line\n")
    # Its command line even says `cgirt serve --site` the tenant's site.
    noter = SignalNoter(tmp_path / "noter", [sys.executable, "-c", SIGNAL_NOTER, "cgirt",
                                             "serve", "--site", str(tenant)])
    try:
        (tenant / ".cgirt" / "runner.pid").write_text(f"{noter.pid}\n")
        rotated = subprocess.run([binary, "-s", str(tmp_path / "logrotate.state"), "-f",
                                  str(logrotate_recipe(sites, tmp_path))],
                                 capture_output=True, text=True, timeout=60)
        assert rotated.returncode != 0, rotated.stderr
        assert (f"cgirt: {tenant}: not signalled: runner.pid names pid {noter.pid}, which "
                "is not a cgirt runner") in rotated.stderr
        assert "Traceback" not in rotated.stderr
        # The genuine runner reopened: a new error.log where logrotate renamed the old one.
        wait_for(lambda: "SIGUSR1: log files reopened" in runner.proc.output(), 30,
                 "the runner to reopen its logs")
        wait_for(lambda: (logs(real) / "error.log").exists(), 30, "a new error.log")
        assert "a line before" in (logs(real) / "error.log.1").read_text()
        assert noter.settle() == []  # no SIGUSR1 from the recipe
    finally:
        noter.stop()


@pytest.mark.parametrize("setting, fragment", [
    ("log_max_size = -1", "log_max_size must be a size"),
    ('log_backups = "five"', "log_backups must be a whole number of at least 0"),
    ('access_log = "yes"', "access_log must be true or false"),
    ("log_file = 3", "log_file must be text"),
])
def test_bad_log_settings_are_one_clear_line(
        site: Path, tmp_path: Path, setting: str, fragment: str) -> None:
    from tests.integration.test_cli import cgirt, one_line_error
    config = tmp_path / "cgirt.toml"
    config.write_text(f"[runner]\n{setting}\n")
    proc = cgirt("serve", "--site", str(site), "--listen", f"unix:{tmp_path}/r.sock",
                 "--config", str(config))
    assert proc.returncode == 2
    one_line_error(proc, f"{config}:2:")
    assert fragment in proc.stderr


def test_a_log_file_that_cannot_be_opened_stops_the_start(site: Path, tmp_path: Path) -> None:
    from tests.integration.test_cli import cgirt, one_line_error
    (tmp_path / "file").write_text("")
    config = tmp_path / "cgirt.toml"
    config.write_text(f'[runner]\nlog_file = "{tmp_path}/file/runner.log"\n')
    proc = cgirt("serve", "--site", str(site), "--listen", f"unix:{tmp_path}/r.sock",
                 "--config", str(config))
    assert proc.returncode == 4
    one_line_error(proc, f"cannot open the log file {tmp_path}/file/runner.log")


def test_the_runners_own_log_file_is_reopened_on_sigusr1(
        site: Path, tmp_path: Path, start_runner: Callable[..., Runner]) -> None:
    import os
    import signal
    log = tmp_path / "runner.log"
    config = tmp_path / "cgirt.toml"
    config.write_text(f'[runner]\nlog_file = "{log}"\n')
    runner = start_runner(site, "--config", str(config), workers=1)
    wait_for(lambda: log.exists() and "cgirt: serving" in log.read_text(), 20, "the start line")
    assert re.match(rf"^{ISO_STAMP} \[{runner.pid}\] INFO cgirt: serving ", log.read_text())
    os.rename(log, tmp_path / "runner.log.1")
    os.kill(runner.pid, signal.SIGUSR1)
    wait_for(lambda: log.exists() and "SIGUSR1: log files reopened" in log.read_text(), 20,
             "the reopened log")
    assert "SIGUSR1" not in (tmp_path / "runner.log.1").read_text()
