"""nginx's main configuration around server blocks, for the tests and the benchmarks alike.

Imports nothing of pytest: bench/ runs in a virtual environment without it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

IS_ROOT = os.geteuid() == 0

NGINX_MAIN = """
daemon off;
master_process on;
worker_processes 1;
{user}
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log {level};
events {{ worker_connections {connections}; }}
http {{
    include /etc/nginx/mime.types;
    access_log off;
    client_body_temp_path {tmp}/body;
    fastcgi_temp_path {tmp}/fastcgi;
    proxy_temp_path {tmp}/proxy;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{servers}
}}
"""


def nginx_main(tmp: Path, servers: Sequence[str], level: str = "info",
               connections: int = 512) -> str:
    """nginx.conf around server blocks: one nginx in the foreground, its files under `tmp`
    (the tests' and the benchmarks' alike)."""
    return NGINX_MAIN.format(tmp=tmp, user="user root;" if IS_ROOT else "", level=level,
                             connections=connections, servers="\n".join(servers))
