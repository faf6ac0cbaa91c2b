"""A real browser (Debian's headless Chromium) uses the skeleton site: through the development
front end of `cgirt up`, and through nginx in front of the runner."""

from __future__ import annotations

import hashlib
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.procs import Proc, wait_for
from tests.support.servers import REPO, Nginx, Runner, free_port, nginx_server_block
from tests.support.webdriver import Browser

pytestmark = pytest.mark.integration


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    b = Browser(tmp_path / "chromium")
    yield b
    b.quit()


def use_the_site(browser: Browser, base: str, tmp_path: Path) -> None:
    browser.get(base + "/")
    assert "cgirt" in browser.text("h1").lower() or "cgirt" in browser.text()
    # The GET form, with text typed by a person.
    browser.type("form[method=get] input[name=name]", " & <b>Ann</b>")
    browser.click("form[method=get] button")
    wait_for(lambda: "/cgi-bin/form.py?" in browser.url, 20, "the GET form's page")
    page = browser.text()
    assert "visitor & <b>Ann</b>" in page  # escaped by the script, so shown as text
    # The POST form.
    browser.get(base + "/")
    browser.click("form[method=post]:not([enctype]) button")
    wait_for(lambda: browser.url.endswith("/cgi-bin/form.py"), 20, "the POST form's page")
    assert "Hello <there> & welcome" in browser.text()
    # The file upload.
    upload = tmp_path / "photo.bin"
    data = bytes(range(256)) * 4000
    upload.write_bytes(data)
    browser.get(base + "/")
    browser.type("form[enctype='multipart/form-data'] input[type=file]", str(upload))
    browser.click("form[enctype='multipart/form-data'] button")
    wait_for(lambda: browser.url.endswith("/cgi-bin/upload.py"), 20, "the upload's page")
    page = browser.text()
    assert "Upload received" in page and "photo.bin" in page
    assert hashlib.sha256(data).hexdigest() in page and f"{len(data)} bytes" in page
    browser.screenshot(tmp_path / "upload.png")


def test_browser_through_the_development_front_end(browser: Browser, tmp_path: Path) -> None:
    site = tmp_path / "site"
    proc = Proc([sys.executable, "-m", "cgirt", "up", "--site", str(site), "--http", "127.0.0.1:0",
                 "--no-ftp"], tmp_path / "up.log", cwd=REPO)
    try:
        m = wait_for(lambda: re.search(r"Web:\s+(http://\S+?)/\s", proc.output()), 60, "cgirt up")
        use_the_site(browser, m.group(1), tmp_path)  # type: ignore[union-attr]
    finally:
        assert proc.stop() == 0


def test_browser_through_nginx(browser: Browser, tmp_path: Path) -> None:
    site = tmp_path / "site"
    shutil.copytree(REPO / "skeleton_site", site)
    (tmp_path / "runner").mkdir()
    runner = Runner(site, tmp_path / "runner")
    try:
        # Chromium speaks TCP: nginx listens on a loopback port it is told.
        port = free_port()
        nginx = Nginx(tmp_path / "nginx", [nginx_server_block(site, f"127.0.0.1:{port}", runner.address)])
        try:
            nginx.wait(f"127.0.0.1:{port}")
            use_the_site(browser, f"http://127.0.0.1:{port}", tmp_path)
        finally:
            nginx.stop()
    finally:
        runner.stop()


def test_status_page_redraws_itself(browser: Browser, tmp_path: Path) -> None:
    """The runner's HTML status page, on a TCP status address Chromium can reach, follows
    requests without being reloaded."""
    from urllib.error import HTTPError

    from tests.support.fcgi import cgi_params, request

    def shown(css: str) -> str:
        try:
            return browser.text(css)
        except HTTPError:
            return ""  # not drawn yet

    site = tmp_path / "site"
    shutil.copytree(REPO / "skeleton_site", site)
    (tmp_path / "runner").mkdir()
    runner = Runner(site, tmp_path / "runner", "--status-listen", "127.0.0.1:0")
    try:
        line = wait_for(lambda: re.search(r"status on (127\.0\.0\.1:\d+)", runner.proc.output()),
                        20, "the status address")
        page = f"http://{line.group(1)}/status?html"  # type: ignore[union-attr]
        browser.get(page)
        wait_for(lambda: shown("#accepted-conn") == "0", 20, "the page's first drawing")
        assert browser.text("#pool") == "site" and browser.text("#total-processes") == "2"
        wait_for(lambda: len(re.findall(r"\bIdle\b", shown(".processes"))) == 2, 20,
                 "both workers booted, shown")
        for _ in range(3):
            assert request(runner.address, cgi_params("/cgi-bin/hello.py")).status == 200
        wait_for(lambda: shown("#accepted-conn") == "3", 20, "the page to redraw itself")
        assert browser.url == page  # redrawn in place, not reloaded
        assert "/cgi-bin/hello.py" in browser.text(".processes")
        browser.screenshot(tmp_path / "status.png")
    finally:
        runner.stop()
