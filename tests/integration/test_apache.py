"""The corpus behind Apache: mod_cgi (the classic reference), mod_proxy_fcgi → cgirt, and
mod_fcgid spawning cgirt on fd 0. Each configuration is read from deploy/, as INSTALL.md shows."""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from cgirt.site import ensure_state
from tests.conftest import make_site
from tests.integration.test_conformance import DESCRIPTORS, SAME, VOLATILE, multipart
from tests.support.http import HttpResponse, fetch
from tests.support.servers import DEPLOY, IS_ROOT, Apache, Runner, fill, make_traversable, require

pytestmark = pytest.mark.integration

CLASSIC = """
ScriptAlias /cgi-bin/ "{site}/cgi-bin/"
<Directory "{site}/cgi-bin">
    AllowOverride None
    Require all granted
    Options +ExecCGI
</Directory>
"""

# What a shared host's admin typically has already: mod_fcgid loaded, overrides allowed.
USER_HOST = """
FcgidIPCDir "{state}/fcgid-user"
FcgidProcessTableFile "{state}/fcgid_user_shm"
Alias /cgi-bin/ "{site}/cgi-bin/"
<Directory "{site}/cgi-bin">
    AllowOverride FileInfo Options
    Require all granted
</Directory>
"""


class ApacheStacks:
    def __init__(self) -> None:
        require("apache2")
        self.root = Path(tempfile.mkdtemp(prefix="cgirt-apache-"))
        os.chmod(self.root, 0o755)
        self.site = make_site(self.root)
        os.chmod(self.site, 0o755)
        ensure_state(self.site)
        if IS_ROOT:
            make_traversable(Path(os.path.realpath(sys.executable)))
            make_traversable(Path(sys.executable))
            # Two runners share this site: one as root (proxy_fcgi), one as www-data (fcgid).
            www = pwd.getpwnam("www-data")
            (self.site / ".cgirt" / "logs" / "error.log").touch()
            (self.site / ".cgirt" / "logs" / "slow.log").touch()
            (self.site / ".cgirt" / "logs" / "access.log").touch()
            (self.site / ".cgirt" / "runner.pid").touch()
            for p in [self.site / ".cgirt", *(self.site / ".cgirt").rglob("*")]:
                os.chown(p, www.pw_uid, www.pw_gid)
        (self.root / "runner").mkdir(mode=0o755)
        self.runner = Runner(self.site, self.root / "runner", socket_mode="666", long_lived=True)
        site = str(self.site)
        self.classic = Apache(self.root / "classic", self.site, fill(CLASSIC, site=site))
        self.proxy = Apache(self.root / "proxy", self.site, fill(
            (DEPLOY / "apache-proxy-fcgi.conf").read_text(), site=site,
            runner_socket=self.runner.address[5:]))
        wrapper = self.root / "cgirt-fcgid-wrapper"
        wrapper.write_text(fill((DEPLOY / "cgirt-fcgid-wrapper").read_text(),
                                python=sys.executable, site=site))
        wrapper.chmod(0o755)
        (self.root / "fcgid-state").mkdir(mode=0o777)
        self.fcgid = Apache(self.root / "fcgid", self.site, fill(
            (DEPLOY / "apache-fcgid.conf").read_text(), site=site, wrapper=str(wrapper),
            state=str(self.root / "fcgid-state")))

        # A site owner without root: the host allows overrides, the owner uploads .htaccess.
        htaccess = self.site / "cgi-bin" / ".htaccess"
        htaccess.write_text(fill((DEPLOY / "htaccess-fcgid").read_text(), wrapper=str(wrapper)))
        self.user = Apache(self.root / "user", self.site, fill(USER_HOST, site=site,
                                                               state=str(self.root / "fcgid-state")))

    def stop(self) -> None:
        for server in (self.classic, self.proxy, self.fcgid, self.user):
            server.stop()
        self.runner.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="module")
def apache() -> Iterator[ApacheStacks]:
    stacks = ApacheStacks()
    yield stacks
    stacks.stop()


def normalised(resp: HttpResponse) -> tuple[int, list[tuple[str, str]], bytes]:
    headers = sorted((k.lower(), v) for k, v in resp.headers if k.lower() not in VOLATILE)
    return resp.status, headers, resp.body


def three(apache: ApacheStacks, path: str, **kw: object) -> list[HttpResponse]:
    return [fetch(s.address, path, **kw) for s in (apache.classic, apache.proxy, apache.fcgid)]  # type: ignore[arg-type]


def test_site_owner_without_root_via_htaccess(apache: ApacheStacks) -> None:
    for path in ("/cgi-bin/hello.py", "/cgi-bin/env.py/extra?x=1", "/cgi-bin/sub/deep.py"):
        classic = fetch(apache.classic.address, path)
        user = fetch(apache.user.address, path)
        assert normalised(user) == normalised(classic)
    assert fetch(apache.user.address, "/cgi-bin/.htaccess").status in (403, 404)


APACHE_ONLY = [
    "/cgi-bin/local_redirect.py",
    "/cgi-bin/argv.py?first+second%20word",
    "/cgi-bin/argv.py?a=b+c",
]


# Apache mod_cgi replaces the body of a script's 302 with its own "moved" page; cgirt passes
# the script's body, as classic CGI behind nginx does (browsers show neither).
BODY_DIFFERS = "/cgi-bin/client_redirect.py"


def test_client_redirect(apache: ApacheStacks) -> None:
    classic, proxy, fcgid = three(apache, BODY_DIFFERS)
    for resp in (classic, proxy, fcgid):
        assert resp.status == 302
        assert resp.header("Location") == "http://example.invalid/elsewhere"


@pytest.mark.parametrize("path", [p for p in SAME if p not in ("/index.html", BODY_DIFFERS)]
                         + APACHE_ONLY + DESCRIPTORS)
def test_same_as_apache_mod_cgi(apache: ApacheStacks, path: str) -> None:
    classic, proxy, fcgid = three(apache, path, headers={"X-Test": "apache", "Proxy": "http://evil:1"})
    assert classic.status < 500, classic
    assert normalised(proxy) == normalised(classic)
    assert normalised(fcgid) == normalised(classic)


@pytest.mark.parametrize("script", ["exit_before.py", "crash.py", "malformed.py"])
def test_failing_scripts_are_500_everywhere(apache: ApacheStacks, script: str) -> None:
    assert [r.status for r in three(apache, f"/cgi-bin/{script}")] == [500, 500, 500]


def test_cgitb_page(apache: ApacheStacks) -> None:
    # Apache 2.4's mod_cgi now rejects cgitb's "<!--: spam" line as a header name and sends
    # a 500 (with a wrong Content-Length); cgirt shows the page, as cgitb intends.
    for server in (apache.proxy, apache.fcgid):
        resp = fetch(server.address, "/cgi-bin/cgitb_page.py")
        assert resp.status == 200 and b"KeyError" in resp.body


def test_post_multipart_upload(apache: ApacheStacks) -> None:
    data = os.urandom(2 * 1024 * 1024)
    body, ctype = multipart({"title": "x"}, {"upload": ("f.bin", data)})
    responses = three(apache, "/cgi-bin/form.py", method="POST", body=body,
                      headers={"Content-Type": ctype})
    assert responses[0].status == 200
    assert responses[1].body == responses[0].body == responses[2].body


def test_head(apache: ApacheStacks) -> None:
    classic, proxy, fcgid = three(apache, "/cgi-bin/hello.py", method="HEAD")
    assert classic.status == proxy.status == fcgid.status == 200
    assert classic.body == proxy.body == fcgid.body == b""


@pytest.mark.parametrize("script", ["stdin_fd.py", "child_reads_body.py", "child_cat_stdin.py"])
def test_request_body_through_fd_0(apache: ApacheStacks, script: str) -> None:
    body = b"a body for fd 0\n" * 1000
    responses = three(apache, f"/cgi-bin/{script}", method="POST", body=body,
                      headers={"Content-Type": "application/octet-stream"})
    assert responses[0].status == 200
    assert responses[1].body == responses[0].body == responses[2].body


def test_background_child_holds_the_response_open(apache: ApacheStacks) -> None:
    for resp in three(apache, "/cgi-bin/background_child.py"):
        assert resp.body == b"the script is done\nlate from the background\n"
