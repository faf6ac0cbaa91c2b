"""The benchmark's nginx blocks (`bench/stack.py`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from bench import stack
from tests.support.nginxconf import nginx_main
from tests.support.servers import DEPLOY, require


def _keep_block(backend: str = "unix:/tmp/cgirt-keep.sock") -> str:
    server = stack.Server("cgirt-keep", "cgi-keep", backend, "/srv/site", keepalive=3)
    return stack._server_block(server, "127.0.0.1:8081")


def test_the_keep_alive_target_is_the_deploy_block_with_a_pool() -> None:
    block = _keep_block()
    deploy = stack._server_block(stack.Server("cgirt", "cgi", "unix:/tmp/cgirt-keep.sock",
                                              "/srv/site"), "127.0.0.1:8081")
    assert "upstream keep_cgirt_keep {\n    server unix:/tmp/cgirt-keep.sock;\n    keepalive 3;\n}" in block
    assert "fastcgi_pass keep_cgirt_keep;\n        fastcgi_keep_conn on;" in block
    # Only the pass line differs from the deploy block: the same params, timeouts, buffering.
    assert block.endswith(deploy.replace("fastcgi_pass unix:/tmp/cgirt-keep.sock;",
                                         "fastcgi_pass keep_cgirt_keep;\n"
                                         "        fastcgi_keep_conn on;"))
    assert "{backend}" in (DEPLOY / "nginx-cgirt.conf").read_text()


def test_nginx_accepts_the_keep_alive_target(tmp_path: Path) -> None:
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_main(tmp_path, [_keep_block(f"unix:{tmp_path}/keep.sock")]))
    r = subprocess.run([require("nginx"), "-t", "-p", str(tmp_path), "-c", str(conf),
                        "-e", str(tmp_path / "error.log")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
