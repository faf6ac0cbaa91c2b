"""lighttpd (mod_fastcgi) in front of the runner, with deploy/lighttpd-cgirt.conf."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import pytest

from tests.support.http import fetch
from tests.support.servers import Lighttpd, Runner

pytestmark = pytest.mark.integration


def test_corpus_behind_lighttpd(site: Path, tmp_path: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site)
    front = Lighttpd(tmp_path / "lighttpd", site, runner.address[5:])
    try:
        resp = fetch(front.address, "/cgi-bin/hello.py")
        assert (resp.status, resp.body) == (200, b"Hello, world!\n")
        body = fetch(front.address, "/cgi-bin/env.py/extra/p?x=1").body.decode()
        assert "SCRIPT_NAME=/cgi-bin/env.py\n" in body and "PATH_INFO=/extra/p\n" in body
        assert f"SCRIPT_FILENAME={site}/cgi-bin/env.py\n" in body
        resp = fetch(front.address, "/cgi-bin/form.py", method="POST", body=b"a=1&b=%3C",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert b"<li>a = 1</li>" in resp.body and b"<li>b = &lt;</li>" in resp.body
        resp = fetch(front.address, "/cgi-bin/cookies.py")
        assert len(resp.header_all("Set-Cookie")) == 3
        assert fetch(front.address, "/cgi-bin/notfound.py").status == 404
        assert fetch(front.address, "/cgi-bin/.cgirt-mode").status in (403, 404)
        assert fetch(front.address, "/index.html").body.startswith(b"<html>")
    finally:
        front.stop()
