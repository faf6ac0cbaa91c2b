"""What INSTALL.md tells an admin to run, run as written: the systemd units' command lines
with the example configuration file (paths and ports moved into the test's directory)."""

from __future__ import annotations

import configparser
import ftplib
import io
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.fcgi import cgi_params, request
from tests.support.procs import Proc, children_of, wait_for
from tests.support.servers import DEPLOY, REPO, connectable

pytestmark = pytest.mark.integration


def unit(name: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / name)
    return parser["Service"]


def example_config(tmp_path: Path, site: Path) -> Path:
    text = (DEPLOY / "cgirt.toml").read_text()
    shop = tmp_path / "shop"
    shop.mkdir()
    (shop / "cgi-bin").mkdir()
    text = (text.replace("/srv/sites/example", str(site)).replace("/srv/sites/shop", str(shop))
            .replace("/run/cgirt/", f"{tmp_path}/").replace("/etc/cgirt/users.json", f"{tmp_path}/users.json")
            .replace('"0.0.0.0:21"', '"127.0.0.1:0"'))
    path = tmp_path / "cgirt.toml"
    path.write_text(text)
    return path


def cgirt(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgirt", *args], input=stdin, capture_output=True,
                          text=True, timeout=60, cwd=REPO)


def command(service: configparser.SectionProxy, config: Path, name: str = "") -> list[str]:
    argv = service["ExecStart"].replace("/etc/cgirt/cgirt.toml", str(config)).replace("%i", name).split()
    assert argv[0] == "/opt/cgirt/bin/cgirt"
    return [sys.executable, "-m", "cgirt", *argv[1:]]


def test_runner_unit_with_the_example_config(site: Path, tmp_path: Path) -> None:
    service = unit("cgirt-runner@.service")
    config = example_config(tmp_path, site)
    assert cgirt("config", "check", str(config)).returncode == 0
    sock = f"unix:{tmp_path}/example.sock"
    proc = Proc(command(service, config, "example"), tmp_path / "unit.log", cwd=REPO)
    try:
        wait_for(lambda: connectable(sock) and len(children_of(proc.pid)) == 4, 20, "the runner")
        assert request(sock, cgi_params("/cgi-bin/hello.py")).body == b"Hello, world!\n"
        before = set(children_of(proc.pid))
        assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: not set(children_of(proc.pid)) & before and len(children_of(proc.pid)) == 4,
                 20, "reloaded workers")
        assert request(sock, cgi_params("/cgi-bin/hello.py")).status == 200
    finally:
        assert proc.stop(signal.SIGTERM, timeout=float(service["TimeoutStopSec"])) == 0
    # systemd must not restart on the statuses that mean "fix the configuration first".
    assert set(service["RestartPreventExitStatus"].split()) == {"2", "3", "4"}
    readme = (REPO / "README.md").read_text()
    assert re.search(r"2 bad arguments.*3 workers failed at\s+boot.*4 cannot start", readme, re.S)


def test_ftp_unit_with_the_example_config(site: Path, tmp_path: Path) -> None:
    service = unit("cgirt-ftp.service")
    config = example_config(tmp_path, site)
    # As INSTALL.md says: the users file is the one the [ftp] table names.
    add = cgirt("user", "add", "example", "--site", str(site), "--config", str(config),
                stdin="s3cret-pass\n")
    assert (tmp_path / "users.json").is_file()
    assert add.returncode == 0, add.stderr
    port_file = tmp_path / "ftp.port"
    proc = Proc(command(service, config) + ["--port-file", str(port_file)], tmp_path / "ftp.log", cwd=REPO)
    try:
        wait_for(lambda: port_file.exists() and port_file.read_text().strip(), 30, "the gateway")
        host, port = port_file.read_text().split()
        client = ftplib.FTP_TLS()
        client.connect(host, int(port), timeout=30)
        client.login("example", "s3cret-pass")  # the example config offers TLS
        client.prot_p()
        client.storbinary("STOR cgi-bin/new.py", io.BytesIO(b'print("Content-Type: text/plain")\nprint()\n'))
        client.quit()
        assert (site / "cgi-bin" / "new.py").exists()
        # `systemctl reload`: users and certificate read again, the gateway goes on.
        assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "TLS certificate read again" in proc.output(), 20, "the reload")
        client = ftplib.FTP_TLS()
        client.connect(host, int(port), timeout=30)
        client.login("example", "s3cret-pass")
        client.quit()
    finally:
        assert proc.stop(signal.SIGTERM, timeout=float(service["TimeoutStopSec"])) == 0


def test_config_check_reports_every_problem_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[runner]\nworkers = 0\nmode = "turbo"\n\n[sites.a]\nsite = "/nonexistent"\n'
                   'listen = "nowhere"\ntimeout = -1\n\n[ftp]\nusers = "u.json"\nlisten = "x"\n'
                   'max_connections = "many"\n')
    proc = cgirt("config", "check", str(bad))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    expected = {2: "workers", 3: "mode", 6: "does not exist", 7: "listen", 8: "timeout", 12: "HOST:PORT",
                13: "max_connections"}
    for number, fragment in expected.items():
        assert any(line.startswith(f"{bad}:{number}:") and fragment in line for line in lines), (number, lines)
    assert len(lines) == len(expected)
    broken = tmp_path / "broken.toml"
    broken.write_text("[runner\nworkers = 2\n")
    proc = cgirt("config", "check", str(broken))
    assert proc.returncode == 2 and "line 1" in proc.stderr and proc.stderr.count("\n") == 1
