"""Upload over FTP, then at once an HTTP request through nginx and the runner: the new
version, every time (the publish contract ends in the runner's change detection)."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from ftp_harness import Gateway, require_tool, start_gateway, stop_gateway

from tests.support.http import fetch
from tests.support.servers import REPO, Nginx, Runner, nginx_server_block

pytestmark = pytest.mark.integration

SKELETON = REPO / "skeleton_site"


def version(n: int, pad: str = "") -> bytes:
    return (f'print("Content-Type: text/plain")\nprint()\nprint("version {n}{pad}")\n').encode()


class Live:
    def __init__(self, root: Path, *gateway_args: str) -> None:
        site = root / "site"
        (site / "cgi-bin").mkdir(parents=True)
        (site / "htdocs").mkdir()
        self.gateway: Gateway = start_gateway(root, *gateway_args, site=site)
        (root / "runner").mkdir()
        self.runner = Runner(site, root / "runner", long_lived=True)
        self.http = f"unix:{root / 'http.sock'}"
        self.nginx = Nginx(root / "nginx", [nginx_server_block(site, self.http, self.runner.address)])
        self.nginx.wait(self.http)
        self.site = site

    def get(self, path: str) -> tuple[int, bytes]:
        resp = fetch(self.http, path)
        return resp.status, resp.body

    def stop(self) -> None:
        self.nginx.stop()
        self.runner.stop()
        stop_gateway(self.gateway.proc)


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Callable[..., Live]]:
    made: list[Live] = []

    def make(*args: str) -> Live:
        made.append(Live(tmp_path / f"live{len(made)}", *args))
        return made[-1]

    yield make
    for one in made:
        one.stop()


def test_ftplib_200_uploads_zero_stale(live: Callable[..., Live]) -> None:
    stack = live()
    client = stack.gateway.ftp()
    stale = []
    for n in range(200):
        # Alternate the size so that a same-size rewrite is among the rounds too.
        client.storbinary("STOR cgi-bin/counter.py", io.BytesIO(version(n, " " * (n % 2))))
        status, body = stack.get("/cgi-bin/counter.py")
        if (status, body.strip()) != (200, f"version {n}".encode()):
            stale.append((n, status, body))
    client.quit()
    assert stale == [], f"{len(stale)} of 200 responses after a 226 were not the new version"


def test_curl_deploys_the_skeleton_over_tls_and_edits_go_live(live: Callable[..., Live], tmp_path: Path) -> None:
    curl = require_tool("curl")
    stack = live("--require-tls")
    for path in sorted(SKELETON.rglob("*")):
        if path.is_file():
            rel = path.relative_to(SKELETON)
            subprocess.run([curl, "-sS", "--ssl-reqd", "-k", "--ftp-create-dirs", "-T", str(path),
                            stack.gateway.url(str(rel))], check=True, capture_output=True, timeout=60)
    status, body = stack.get("/cgi-bin/hello.py")
    assert status == 200 and b"Hello, world!" in body
    assert b"cgirt" in stack.get("/index.html")[1]  # uploaded into htdocs/, served by nginx
    edited = tmp_path / "hello.py"
    for n in range(20):
        edited.write_bytes(version(n))
        subprocess.run([curl, "-sS", "--ssl-reqd", "-k", "-T", str(edited),
                        stack.gateway.url("cgi-bin/hello.py")], check=True, capture_output=True, timeout=60)
        assert stack.get("/cgi-bin/hello.py") == (200, f"version {n}\n".encode())
    broken = tmp_path / "broken.py"
    broken.write_bytes(b"print('unterminated\n")
    out = subprocess.run([curl, "-sS", "-v", "--ssl-reqd", "-k", "-T", str(broken),
                          stack.gateway.url("cgi-bin/hello.py")], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "< 550-" in out.stderr and "SyntaxError" in out.stderr
    assert stack.get("/cgi-bin/hello.py") == (200, b"version 19\n")
    assert "hello.py" in (stack.site / ".cgirt" / "logs" / "deploy.log").read_text()


def test_lftp_mirror_of_the_skeleton_with_ssl_force(live: Callable[..., Live], tmp_path: Path) -> None:
    lftp = require_tool("lftp")
    stack = live("--require-tls")
    local = tmp_path / "local"
    shutil.copytree(SKELETON, local)
    gw = stack.gateway
    script = (f"set net:max-retries 1; set ftp:ssl-force true; set ftp:ssl-protect-data true; "
              f"set ssl:verify-certificate no; open -u {gw.user},'{gw.password}' -p {gw.port} {gw.host}; "
              f"mirror -R --no-perms {local} /; bye")
    for n in range(5):
        subprocess.run([lftp, "-c", script], check=True, capture_output=True, timeout=120)
        status, body = stack.get("/cgi-bin/form.py?name=Ann")
        assert status == 200 and b"Ann" in body
        if n:
            assert stack.get("/cgi-bin/hello.py") == (200, f"version {n}{'.' * n}\n".encode())
        # A new size each time: mirror decides what changed by size and time, and a
        # same-second, same-size edit would not be sent at all.
        (local / "cgi-bin" / "hello.py").write_bytes(version(n + 1, "." * (n + 1)))


def test_uploads_belong_to_the_site_owner_when_the_gateway_runs_as_root(tmp_path: Path) -> None:
    import os
    import pwd
    if os.geteuid() != 0:
        pytest.skip("needs root")
    owner = pwd.getpwnam("nobody")
    site = tmp_path / "site"
    (site / "cgi-bin").mkdir(parents=True)
    for p in (site, site / "cgi-bin"):
        os.chown(p, owner.pw_uid, owner.pw_gid)
    gw = start_gateway(tmp_path, site=site)
    try:
        client = gw.ftp()
        client.storbinary("STOR cgi-bin/a.py", io.BytesIO(version(1)))
        client.mkd("cgi-bin/sub")
        client.quit()
        for p in (site / "cgi-bin" / "a.py", site / "cgi-bin" / "sub"):
            assert (p.stat().st_uid, p.stat().st_gid) == (owner.pw_uid, owner.pw_gid)
    finally:
        stop_gateway(gw.proc)
