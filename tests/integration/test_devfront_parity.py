"""The development front end passes what the documented nginx configuration passes.

One runner serves the conformance corpus behind two front ends at once: nginx with the
server block of INSTALL.md (deploy/nginx-cgirt.conf, nginx's own fastcgi_params included)
and cgirt's development front end (`python -m cgirt.devserver`, as `cgirt up` starts it).
Every request goes to both; the scripts' whole environments and the responses must be the
same, except for what names each front end's own socket and software (VOLATILE).
"""

from __future__ import annotations

import ast
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_site
from tests.support.http import HttpResponse, fetch
from tests.support.procs import Proc, wait_for
from tests.support.servers import REPO, Nginx, Runner, nginx_server_block

pytestmark = pytest.mark.integration

# Named by each front end after its own listening socket and software: nginx listens on a
# unix socket here (REMOTE_ADDR "unix:", no ports), the front end on TCP; SERVER_NAME is
# nginx's `server_name`, the front end's listen host.
VOLATILE = {"SERVER_SOFTWARE", "SERVER_NAME", "SERVER_ADDR", "SERVER_PORT", "REMOTE_ADDR",
            "REMOTE_PORT"}
# Response headers that carry a time or the front end's name, or frame the body.
VOLATILE_HEADERS = {"date", "server", "connection", "keep-alive", "transfer-encoding",
                    "content-length"}
# The same Host header to both; what each makes of another: test_host_header_is_passed_as_sent.
HOST = {"Host": "localhost"}


class Fronts:
    def __init__(self, root: Path) -> None:
        self.site = make_site(root)
        (root / "runner").mkdir()
        shutil.copy2(self.site / "cgi-bin" / "environ.py", self.site / "cgi-bin" / "environ")
        self.runner = Runner(self.site, root / "runner", long_lived=True)
        self.nginx_address = f"unix:{root / 'nginx.sock'}"
        self.nginx = Nginx(root / "nginx", [
            nginx_server_block(self.site, self.nginx_address, self.runner.address)])
        self.dev = Proc([sys.executable, "-m", "cgirt.devserver", "--site", str(self.site),
                         "--listen", "127.0.0.1:0", "--backend", self.runner.address],
                        root / "devserver.log", cwd=REPO, long_lived=True)
        try:
            self.nginx.wait(self.nginx_address)
            url = wait_for(lambda: re.search(r"http://([\d.]+:\d+)/", self.dev.output())
                           or not self.dev.alive(), 30, "the development front end")
            assert isinstance(url, re.Match), self.dev.output()
            self.dev_address = url.group(1)
        except BaseException:
            self.stop()
            raise

    def one(self, address: str, path: str, **kw: Any) -> HttpResponse:
        return fetch(address, path, **{**kw, "headers": {**HOST, **kw.get("headers", {})}})

    def both(self, path: str, **kw: Any) -> tuple[HttpResponse, HttpResponse]:
        return self.one(self.nginx_address, path, **kw), self.one(self.dev_address, path, **kw)

    def stop(self) -> None:
        self.dev.stop()
        self.nginx.stop()
        self.runner.stop()


@pytest.fixture(scope="module")
def fronts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fronts]:
    started = Fronts(tmp_path_factory.mktemp("parity"))
    yield started
    started.stop()


def environment(resp: HttpResponse) -> dict[str, str]:
    assert resp.status == 200, resp
    env = {}
    for line in resp.body.decode("utf-8", "surrogateescape").splitlines():
        name, _, value = line.partition("=")
        env[name] = value if name == "stdin" else ast.literal_eval(value)
    return env


def differences(nginx: dict[str, str], dev: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    return {k: (nginx.get(k), dev.get(k)) for k in sorted(nginx.keys() | dev.keys())
            if k not in VOLATILE and nginx.get(k) != dev.get(k)}


def chunks() -> Iterator[bytes]:
    yield from (b"x" * 7 for _ in range(15))


REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("plain GET", "/cgi-bin/environ.py", {}),
    ("GET with path info and query", "/cgi-bin/environ.py/extra/path?x=1&y=%20z", {}),
    ("encoded path info", "/cgi-bin/environ.py/caf%C3%A9%20x/%2Fslash?q=%C3%A9", {}),
    ("trailing slash path info", "/cgi-bin/environ.py/", {}),
    ("search string", "/cgi-bin/environ.py?first+second", {}),
    ("script in a subdirectory", "/cgi-bin/sub/../environ.py/x", {}),
    ("script without extension", "/cgi-bin/environ/more/info?a=b", {}),
    ("headers", "/cgi-bin/environ.py", {"headers": {
        "X-Test": "parity", "Cookie": "a=1; b=2", "Accept-Language": "fr, en;q=0.5",
        "Proxy": "http://evil:1", "X_Underscore": "dropped", "User-Agent": "parity/1.0",
        "Referer": "http://localhost/page"}}),
    ("GET with an empty body", "/cgi-bin/environ.py/p", {"headers": {"Content-Length": "0"}}),
    ("GET with a Content-Type", "/cgi-bin/environ.py/p", {"headers": {"Content-Type": "text/plain"}}),
    ("HEAD", "/cgi-bin/environ.py/p", {"method": "HEAD"}),
    ("POST form", "/cgi-bin/environ.py/p?q=1", {"method": "POST", "body": b"a=1&b=%20",
     "headers": {"Content-Type": "application/x-www-form-urlencoded"}}),
    ("POST without a type", "/cgi-bin/environ.py", {"method": "POST", "body": b"raw bytes"}),
    # A body from an iterator: http.client sends it chunked.
    ("POST chunked", "/cgi-bin/environ.py", {"method": "POST", "body": "chunks",
     "headers": {"Content-Type": "application/octet-stream"}}),
    ("PUT empty", "/cgi-bin/environ.py", {"method": "PUT", "body": b""}),
    ("DELETE", "/cgi-bin/environ.py/item/7", {"method": "DELETE"}),
]


@pytest.mark.parametrize("path, kw", [(p, k) for _, p, k in REQUESTS],
                         ids=[name for name, _, _ in REQUESTS])
def test_same_environment(fronts: Fronts, path: str, kw: dict[str, Any]) -> None:
    if kw.get("method") == "HEAD":
        # No body to read the environment from: the same request as GET, compared by
        # response, and its environment through GET below.
        nginx, dev = fronts.both(path, **kw)
        assert (nginx.status, nginx.body) == (dev.status, dev.body) == (200, b"")
        return
    if kw.get("body") == "chunks":
        nginx_env = environment(fronts.one(fronts.nginx_address, path, **{**kw, "body": chunks()}))
        dev_env = environment(fronts.one(fronts.dev_address, path, **{**kw, "body": chunks()}))
    else:
        nginx_resp, dev_resp = fronts.both(path, **kw)
        nginx_env, dev_env = environment(nginx_resp), environment(dev_resp)
    assert differences(nginx_env, dev_env) == {}
    assert VOLATILE <= nginx_env.keys() and VOLATILE <= dev_env.keys()



# The conformance corpus (test_conformance.py runs it against classic CGI), plus the
# scripts whose answers the runner shapes itself: local redirects, argv, failures.
CORPUS = [
    "/cgi-bin/hello.py", "/cgi-bin/form.py?name=Ann&tag=a&tag=b%26c&html=%3Cb%3E",
    "/cgi-bin/cookies.py", "/cgi-bin/notfound.py", "/cgi-bin/client_redirect.py",
    "/cgi-bin/env.py/extra/path?x=1", "/cgi-bin/env.py", "/cgi-bin/readfile.py",
    "/cgi-bin/png.py", "/cgi-bin/stderr.py", "/cgi-bin/exit_after.py",
    "/cgi-bin/wsgi_app.py/api?q=1", "/cgi-bin/wsgi_app.py/nothing", "/cgi-bin/shell.sh?world",
    "/cgi-bin/sub/deep.py", "/cgi-bin/local_redirect.py",
    "/cgi-bin/argv.py?first+second%20word+%C3%A9", "/cgi-bin/exit_before.py",
    "/cgi-bin/crash.py", "/cgi-bin/malformed.py", "/cgi-bin/cgitb_page.py",
    "/cgi-bin/uses_helper.py", "/cgi-bin/missing.py", "/cgi-bin/.hidden.py", "/cgi-bin/sub/",
]


def normalised(resp: HttpResponse) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k.lower(), v) for k, v in resp.headers if k.lower() not in VOLATILE_HEADERS)
    return resp.status, headers, resp.body


@pytest.mark.parametrize("path", CORPUS)
def test_same_response(fronts: Fronts, path: str) -> None:
    nginx, dev = fronts.both(path, headers={"X-Test": "parity", "Proxy": "http://evil:1"})
    assert normalised(dev) == normalised(nginx)


def test_same_post_response(fronts: Fronts) -> None:
    body = b"name=Bob&comment=%3Cscript%3E&x=1&x=2"
    nginx, dev = fronts.both("/cgi-bin/form.py", method="POST", body=body,
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert nginx.status == 200 and normalised(dev) == normalised(nginx)



def test_host_header_is_passed_as_sent(fronts: Fronts) -> None:
    """The one difference left, and it is the installed nginx's: Debian's fastcgi_params
    (the one installed here) overrides HTTP_HOST with $host, which drops the port and
    lowercases; upstream nginx's passes the header as sent, as the front end does (a
    development server on port 8000 needs the port in the links its scripts build)."""
    nginx, dev = fronts.both("/cgi-bin/environ.py", headers={"Host": "LocalHost:8000"})
    assert environment(dev)["HTTP_HOST"] == "LocalHost:8000"
    params = Path("/etc/nginx/fastcgi_params").read_text()
    debian = re.search(r"^\s*fastcgi_param\s+HTTP_HOST\s+\$host;", params, re.M)
    assert environment(nginx)["HTTP_HOST"] == ("localhost" if debian else "LocalHost:8000")
