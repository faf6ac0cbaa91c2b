"""What INSTALL.md tells an admin to run, run as written: the systemd unit's command lines
with the example site configuration."""

from __future__ import annotations

import configparser
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.support.fcgi import cgi_params, request
from tests.support.procs import Proc, children_of, wait_for
from tests.support.servers import DEPLOY, REPO, connectable

pytestmark = pytest.mark.integration


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(DEPLOY / name)
    return parser


def test_runner_unit_with_the_example_config(site: Path, tmp_path: Path) -> None:
    service = unit("cgirt-runner@.service")["Service"]
    sock = tmp_path / "example.sock"
    config = (DEPLOY / "site.toml").read_text()
    config = config.replace("/srv/sites/example", str(site)).replace("/run/cgirt/example.sock", str(sock))
    (tmp_path / "example.toml").write_text(config)
    argv = service["ExecStart"].replace("/etc/cgirt/%i.toml", str(tmp_path / "example.toml")).split()
    assert argv[:2] == ["/opt/cgirt/bin/cgirt", "serve"]
    proc = Proc([sys.executable, "-m", "cgirt", *argv[1:]], tmp_path / "unit.log", cwd=REPO)
    try:
        wait_for(lambda: connectable(f"unix:{sock}") and len(children_of(proc.pid)) == 4, 20, "the runner")
        assert request(f"unix:{sock}", cgi_params("/cgi-bin/hello.py")).body == b"Hello, world!\n"
        before = set(children_of(proc.pid))
        assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: not set(children_of(proc.pid)) & before and len(children_of(proc.pid)) == 4,
                 20, "reloaded workers")
        assert request(f"unix:{sock}", cgi_params("/cgi-bin/hello.py")).status == 200
    finally:
        assert proc.stop(signal.SIGTERM, timeout=float(service["TimeoutStopSec"])) == 0
    # systemd must not restart on the statuses that mean "fix the configuration first".
    assert set(service["RestartPreventExitStatus"].split()) == {"2", "3", "4"}
    readme = (REPO / "README.md").read_text()
    assert re.search(r"2 bad arguments.*3 workers failed at\s+boot.*4 cannot start", readme, re.S)
