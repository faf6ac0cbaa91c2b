"""`cgirt serve` from the outside: listening modes, errors as one clear line, exit codes."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from cgirt.errors import ExitStatus
from tests.support.fcgi import cgi_params, request
from tests.support.procs import Proc, wait_for
from tests.support.servers import REPO, Runner

pytestmark = pytest.mark.integration


def cgirt(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cgirt", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def one_line_error(proc: subprocess.CompletedProcess[str], fragment: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert fragment in lines[0] and "Traceback" not in proc.stderr


def test_unknown_site(tmp_path: Path) -> None:
    proc = cgirt("serve", "--site", str(tmp_path / "nope"), "--listen", f"unix:{tmp_path}/s")
    assert proc.returncode == 4
    one_line_error(proc, "does not exist")


@pytest.mark.parametrize("args, fragment", [
    (["serve", "--site", ".", "--listen", "nonsense"], "unix:PATH, HOST:PORT or fd:0"),
    (["serve", "--site", ".", "--listen", "unix:/tmp/x", "--workers", "0"], "workers"),
    (["serve", "--site", ".", "--listen", "unix:/tmp/x", "--workers", "many"], "invalid int"),
    (["serve", "--site", ".", "--listen", "unix:/tmp/x", "--mode", "turbo"], "invalid choice"),
    (["serve", "--listen", "unix:/tmp/x"], "no site given"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_arguments(args: list[str], fragment: str) -> None:
    proc = cgirt(*args)
    assert proc.returncode == 2
    one_line_error(proc, fragment)


def test_socket_in_use(site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site)
    proc = cgirt("serve", "--site", str(site), "--listen", runner.address)
    assert proc.returncode == 4
    one_line_error(proc, "socket in use")
    assert request(runner.address, cgi_params("/cgi-bin/hello.py")).status == 200


def test_tcp_port_in_use(site: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = cgirt("serve", "--site", str(site), "--listen", f"127.0.0.1:{port}")
    assert proc.returncode == 4
    one_line_error(proc, "Address already in use")


def test_tcp_on_port_0_reports_its_port(site: Path, tmp_path: Path) -> None:
    proc = Proc([sys.executable, "-m", "cgirt", "serve", "--site", str(site), "--listen",
                 "127.0.0.1:0"], tmp_path / "out.log", cwd=REPO)
    try:
        m = wait_for(lambda: re.search(r"on 127\.0\.0\.1:(\d+)", proc.output()), 20, "the port")
        address = f"127.0.0.1:{m.group(1)}"  # type: ignore[union-attr]
        assert request(address, cgi_params("/cgi-bin/hello.py")).body == b"Hello, world!\n"
    finally:
        assert proc.stop() == 0


def test_inherited_listening_socket_on_fd_0(site: Path, tmp_path: Path) -> None:
    """As spawn-fcgi and mod_fcgid start a FastCGI program."""
    path = str(tmp_path / "fd0.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    proc = Proc([sys.executable, "-m", "cgirt", "serve", "--site", str(site), "--listen", "fd:0"],
                tmp_path / "out.log", cwd=REPO, stdin=listener.fileno())
    listener.close()
    try:
        resp = request(f"unix:{path}", cgi_params("/cgi-bin/hello.py"))
        assert resp.body == b"Hello, world!\n"
    finally:
        assert proc.stop() == 0


def test_fd_0_that_is_not_a_socket(site: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "cgirt", "serve", "--site", str(site), "--listen",
                           "fd:0"], stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=30, cwd=REPO)
    assert proc.returncode == 4
    one_line_error(proc, "fd 0 is not a listening socket")


def test_config_file_error_names_the_line(tmp_path: Path) -> None:
    conf = tmp_path / "cgirt.toml"
    conf.write_text('[runner]\nsite = "."\n\nworkers = -3\n')
    proc = cgirt("serve", "--config", str(conf))
    assert proc.returncode == 2
    one_line_error(proc, f"{conf}:4:")
    conf.write_text('[runner]\nsite = "."\nworkers = \n')
    proc = cgirt("serve", "--config", str(conf))
    assert proc.returncode == 2
    one_line_error(proc, "line 3")


def test_config_file_settings_apply(site: Path, tmp_path: Path) -> None:
    conf = tmp_path / "cgirt.toml"
    conf.write_text(f'[runner]\nsite = "{site}"\nlisten = "unix:{tmp_path}/c.sock"\nworkers = 3\n')
    proc = Proc([sys.executable, "-m", "cgirt", "serve", "--config", str(conf)], tmp_path / "o.log", cwd=REPO)
    try:
        wait_for(lambda: "with 3 workers" in proc.output(), 20, "the runner")
        assert request(f"unix:{tmp_path}/c.sock", cgi_params("/cgi-bin/hello.py")).status == 200
    finally:
        assert proc.stop() == 0


def test_preload_imports_modules_before_any_script_but_never_the_sites(site: Path, tmp_path: Path) -> None:
    (site / "lib").mkdir()
    (site / "lib" / "sitehelper.py").write_text("VALUE = 1\n")
    (site / "cgi-bin" / "mods.py").write_text(
        "import sys\nprint('Content-Type: text/plain')\nprint()\n"
        "print(sorted(m for m in ('json', 'sitehelper', 'no_such_module_xyz') if m in sys.modules))\n")
    conf = tmp_path / "cgirt.toml"
    conf.write_text(f'[runner]\nsite = "{site}"\nlisten = "unix:{tmp_path}/c.sock"\nmode = "fork"\n'
                    'preload = ["json", "no_such_module_xyz", "sitehelper"]\n')
    # The admin's PYTHONPATH reaches into the site: the site's module is still not preloaded.
    env = {**os.environ, "PYTHONPATH": str(site / "lib")}
    proc = Proc([sys.executable, "-m", "cgirt", "serve", "--config", str(conf)], tmp_path / "o.log",
                env=env, cwd=REPO)
    try:
        wait_for(lambda: "workers" in proc.output(), 20, "the runner")
        resp = request(f"unix:{tmp_path}/c.sock", cgi_params("/cgi-bin/mods.py"))
        assert (resp.status, resp.body) == (200, b"['json']\n")
        out = proc.output()
        assert "preload: no module named 'no_such_module_xyz'" in out
        assert "preload: 'sitehelper' is the site's own module" in out
    finally:
        assert proc.stop() == 0


def test_preload_entries_must_be_module_names(tmp_path: Path) -> None:
    conf = tmp_path / "cgirt.toml"
    conf.write_text('[runner]\nsite = "."\npreload = ["json", "not a module"]\n')
    proc = cgirt("serve", "--config", str(conf))
    assert proc.returncode == 2
    one_line_error(proc, "module names such as 'json'")


# -- every command: --version, the exit-status table, old spellings ---------------------


def test_version_is_the_installed_packages() -> None:
    from importlib import metadata

    proc = cgirt("--version")
    assert proc.returncode == 0
    assert proc.stdout == f"cgirt {metadata.version('cgirt')}\n"


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        yield taken.getsockname()[1]


def test_address_in_use_is_4_from_every_program(site: Path, tmp_path: Path, taken_port: int) -> None:
    address = f"127.0.0.1:{taken_port}"
    serve = cgirt("serve", "--site", str(site), "--listen", address)
    ftp = cgirt("ftp", "--users", str(tmp_path / "users.json"), "--listen", address)
    front = subprocess.run([sys.executable, "-m", "cgirt.devserver", "--site", str(site),
                            "--listen", address, "--backend", "unix:/nowhere"],
                           capture_output=True, text=True, timeout=30, cwd=REPO)
    for proc in (serve, ftp, front):
        assert proc.returncode == int(ExitStatus.CANNOT_START) == 4, proc.stderr
        one_line_error(proc, "Address already in use")


def test_bad_arguments_are_2_from_every_program(site: Path, tmp_path: Path) -> None:
    ftp = cgirt("ftp", "--users", str(tmp_path / "users.json"), "--idle-timeout", "forever")
    front = subprocess.run([sys.executable, "-m", "cgirt.devserver", "--site", str(site),
                            "--backend", "unix:/nowhere", "--max-body", "huge"],
                           capture_output=True, text=True, timeout=30, cwd=REPO)
    user = cgirt("user", "list")
    for proc, fragment in ((ftp, "--idle-timeout must be a duration"),
                           (front, "--max-body must be a size"), (user, "--users FILE")):
        assert proc.returncode == int(ExitStatus.USAGE) == 2, proc.stderr
        one_line_error(proc, fragment)


def test_old_flag_works_with_a_warning_naming_the_new_one(tmp_path: Path) -> None:
    proc = cgirt("serve", "--site", str(tmp_path / "nope"), "--listen", f"unix:{tmp_path}/s",
                 "--memory-limit-mb", "64", "--timeout", "5s")
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == "cgirt: warning: --memory-limit-mb is deprecated: use --memory-limit 64M"
    assert proc.returncode == 4 and "does not exist" in lines[1] and len(lines) == 2


def test_config_check_reports_sizes_durations_and_old_names_with_their_lines(tmp_path: Path) -> None:
    conf = tmp_path / "cgirt.toml"
    conf.write_text('[runner]\nmemory_limit_mb = 512\ntimeout = "30 seconds"\nmax_body = "1Q"\n\n'
                    '[ftp]\nusers = "u.json"\nquota_bytes = 1024\nban_window = "10m"\n'
                    'idle_timeout = -1\n')
    proc = cgirt("config", "check", str(conf))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f'{conf}:2: warning: memory_limit_mb is deprecated: use memory_limit = "512M"',
        f"{conf}:8: warning: quota_bytes is deprecated: use quota_size = 1024",
        f'{conf}:3: timeout must be a duration: seconds, or a number with ms, s, m or h such '
        f"as \"30s\", not '30 seconds'",
        f'{conf}:4: max_body must be a size: bytes, or a number with K, M, G or T such as '
        f"\"512M\", not '1Q'",
        f'{conf}:10: idle_timeout must be a duration: seconds, or a number with ms, s, m or h '
        f'such as "30s", not -1',
    ]
    conf.write_text('[runner]\nmemory_limit_mb = 512\n')
    proc = cgirt("config", "check", str(conf))
    assert proc.returncode == 0 and "memory_limit = \"512M\"" in proc.stderr


def test_new_spellings_reach_the_runner(site: Path, tmp_path: Path,
                                        start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, "--max-body", "1K", "--timeout", "20s")
    params = cgi_params("/cgi-bin/hello.py", method="POST", CONTENT_TYPE="text/plain")
    small = request(runner.address, {**params, "CONTENT_LENGTH": "1024"}, b"x" * 1024)
    large = request(runner.address, {**params, "CONTENT_LENGTH": "1025"}, b"x" * 1025)
    assert (small.status, large.status) == (200, 413)
    # A memory limit far below what a worker needs: a boot failure (3), from the new name.
    proc = cgirt("serve", "--site", str(site), "--listen", f"unix:{tmp_path}/m.sock",
                 "--memory-limit", "1M")
    assert proc.returncode == 3 and "memory_limit 1M is below" in proc.stderr
    assert "deprecated" not in proc.stderr


def test_an_old_name_in_the_config_file_is_warned_with_its_line(tmp_path: Path) -> None:
    conf = tmp_path / "cgirt.toml"
    conf.write_text(f'[runner]\nsite = "{tmp_path}/nope"\nlisten = "unix:{tmp_path}/s"\n'
                    "max_body_bytes = 2048\n")
    proc = cgirt("serve", "--config", str(conf))
    lines = proc.stderr.strip().splitlines()
    assert lines[0] == f"cgirt: {conf}:4: warning: max_body_bytes is deprecated: use max_body = 2048"
    assert proc.returncode == 4 and "does not exist" in lines[1] and len(lines) == 2


def test_a_state_folder_the_owner_made_a_link_stops_serve_with_one_line(site: Path,
                                                                         tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    state = site / ".cgirt"
    if state.exists():
        state.rename(tmp_path / "state.moved")
    state.symlink_to(elsewhere)
    proc = cgirt("serve", "--site", str(site), "--listen", f"unix:{tmp_path / 'r.sock'}")
    assert proc.returncode == int(ExitStatus.CANNOT_START), proc.stderr
    one_line_error(proc, ".cgirt is a symbolic link: refused")
    assert os.listdir(elsewhere) == []
