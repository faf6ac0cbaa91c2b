"""The skeleton site's scripts, run as classic CGI programs."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import pytest

from cgi_invoke import CgiResult, finish_cgi, run_cgi, start_cgi

SKELETON = Path(__file__).resolve().parents[2] / "skeleton_site"
SCRIPTS = ("hello.py", "form.py", "upload.py", "redirect.py", "env.py", "guestbook.py")
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def site(tmp_path: Path) -> Path:
    """A copy of the skeleton, so the guestbook writes into the test's own directory."""
    copy = tmp_path / "site"
    shutil.copytree(SKELETON, copy)
    return copy


def script(site: Path, name: str) -> Path:
    return site / "cgi-bin" / name


def ok_html(result: CgiResult) -> str:
    assert result.status == 200
    assert result.header("Content-Type") == "text/html; charset=utf-8"
    assert result.stderr == b""
    return result.text


def multipart(fields: dict[str, str], filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = "----cgirt-test-boundary-7MA4YWxkTrZu0gW"
    parts = [f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
             .encode() for k, v in fields.items()]
    parts.append(f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                 f"filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                 .encode() + content + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


# -- every script ----------------------------------------------------------------------


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_are_ordinary_executable_cgi_scripts(name: str) -> None:
    path = SKELETON / "cgi-bin" / name
    source = path.read_text()
    assert source.startswith("#!/usr/bin/env python3\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o755
    compile(source, str(path), "exec")


# -- hello -----------------------------------------------------------------------------


def test_hello(site: Path) -> None:
    page = ok_html(run_cgi(script(site, "hello.py")))
    assert "Hello, world!" in page and "classic-cgi-test" in page


# -- form ------------------------------------------------------------------------------


def test_form_get_escapes_everything(site: Path) -> None:
    query = urlencode({"name": "<b>Al</b>", "colour": "\"green\" & 'blue'"})
    page = ok_html(run_cgi(script(site, "form.py"), query=query))
    assert "by GET" in page
    assert "&lt;b&gt;Al&lt;/b&gt;" in page and "<b>Al</b>" not in page
    assert "&quot;green&quot; &amp; &#x27;blue&#x27;" in page


def test_form_post(site: Path) -> None:
    body = urlencode({"name": "José", "message": "<script>alert(1)</script>"}).encode()
    page = ok_html(run_cgi(script(site, "form.py"), method="POST", body=body,
                           content_type=FORM))
    assert "by POST" in page
    assert "Jos&#233;" in page
    assert "&lt;script&gt;" in page and "<script>" not in page


def test_form_without_fields(site: Path) -> None:
    assert "No fields were sent." in ok_html(run_cgi(script(site, "form.py")))


# -- upload ----------------------------------------------------------------------------


def test_upload_reports_name_size_and_sha256(site: Path) -> None:
    content = bytes(range(256)) * 4000 + b"\r\n--not-a-boundary\r\n"
    body, content_type = multipart({"note": "a <note>"}, "<odd> name.bin", content)
    page = ok_html(run_cgi(script(site, "upload.py"), method="POST", body=body,
                           content_type=content_type))
    assert "Upload received" in page
    assert "&lt;odd&gt; name.bin" in page
    assert f"{len(content)} bytes" in page
    assert hashlib.sha256(content).hexdigest() in page
    assert "a &lt;note&gt;" in page


def test_upload_keeps_only_the_base_name_of_a_windows_path(site: Path) -> None:
    body, content_type = multipart({}, "C:\\Users\\me\\photo.jpg", b"jpeg")
    page = ok_html(run_cgi(script(site, "upload.py"), method="POST", body=body,
                           content_type=content_type))
    assert ">photo.jpg<" in page and "Users" not in page


def test_upload_page_without_a_file(site: Path) -> None:
    page = ok_html(run_cgi(script(site, "upload.py")))
    assert "No file was received." in page and "multipart/form-data" in page


# -- redirect --------------------------------------------------------------------------


@pytest.mark.parametrize("query, location", [
    ("", "/"),
    ("to=/cgi-bin/hello.py", "/cgi-bin/hello.py"),
    ("to=//evil.example/", "/"),
    ("to=https://evil.example/", "/"),
    ("to=/%5Cevil", "/"),
    ("to=/x%0D%0ASet-Cookie:%20a=1", "/xSet-Cookie: a=1"),
])
def test_redirect(site: Path, query: str, location: str) -> None:
    result = run_cgi(script(site, "redirect.py"), query=query)
    assert result.status == 302
    assert result.header("Location") == location
    assert result.header("Set-Cookie") is None


# -- env -------------------------------------------------------------------------------


def test_env_shows_cgi_variables_only(site: Path) -> None:
    extra = {"HTTP_X_TEST": "<script>", "SECRET_TOKEN": "hunter2", "HOME": "/root"}
    page = ok_html(run_cgi(script(site, "env.py"), query="a=1", extra=extra))
    for name in ("GATEWAY_INTERFACE", "REQUEST_METHOD", "QUERY_STRING", "SCRIPT_NAME",
                 "SERVER_SOFTWARE", "HTTP_HOST", "HTTP_X_TEST"):
        assert f"<td>{name}</td>" in page
    assert "&lt;script&gt;" in page
    assert "SECRET_TOKEN" not in page and "hunter2" not in page
    assert "<td>PATH</td>" not in page and "<td>HOME</td>" not in page


# -- guestbook -------------------------------------------------------------------------


def sign(site: Path, name: str, message: str) -> CgiResult:
    body = urlencode({"name": name, "message": message}).encode()
    return run_cgi(script(site, "guestbook.py"), method="POST", body=body, content_type=FORM)


def test_guestbook_starts_empty(site: Path) -> None:
    assert "0 entries." in ok_html(run_cgi(script(site, "guestbook.py")))


def test_guestbook_post_redirects_and_shows_the_entry_escaped(site: Path) -> None:
    result = sign(site, "<Eve>", "hi & bye\nsecond line")
    assert result.status == 303
    assert result.header("Location") == "/cgi-bin/guestbook.py"
    page = ok_html(run_cgi(script(site, "guestbook.py")))
    assert "1 entries." in page
    assert "&lt;Eve&gt;" in page and "hi &amp; bye" in page
    data = site / "data" / "guestbook.txt"
    assert json.loads(data.read_text())["name"] == "<Eve>"
    assert not any(p.name == "guestbook.txt" for p in (site / "htdocs").rglob("*"))


@pytest.mark.parametrize("name, message", [("", "text"), ("someone", ""), ("x" * 101, "m")])
def test_guestbook_refuses_incomplete_or_long_entries(site: Path, name: str,
                                                      message: str) -> None:
    result = sign(site, name, message)
    assert result.status == 400
    assert not (site / "data" / "guestbook.txt").exists()


def test_twenty_concurrent_posts_are_all_kept(site: Path) -> None:
    bodies = [urlencode({"name": f"writer{i}", "message": f"entry {i} " + "x" * 500}).encode()
              for i in range(20)]
    processes = [start_cgi(script(site, "guestbook.py"), method="POST", body=body,
                           content_type=FORM) for body in bodies]
    results = [finish_cgi(process, body) for process, body in zip(processes, bodies)]
    assert [r.status for r in results] == [303] * 20
    lines = (site / "data" / "guestbook.txt").read_text().splitlines()
    names = sorted(json.loads(line)["name"] for line in lines)
    assert names == sorted(f"writer{i}" for i in range(20))


# -- the index page --------------------------------------------------------------------


class Index(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.forms: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs).get("href") or "")
        elif tag == "form":
            self.forms.append(dict(attrs))


def test_index_links_each_script_and_has_the_three_forms() -> None:
    index = Index()
    index.feed((SKELETON / "htdocs" / "index.html").read_text())
    linked = {link.split("?")[0] for link in index.links}
    assert {f"/cgi-bin/{name}" for name in SCRIPTS} <= linked
    kinds = {(f.get("method"), f.get("enctype")) for f in index.forms}
    assert ("get", None) in kinds and ("post", None) in kinds
    assert ("post", "multipart/form-data") in kinds
    for form in index.forms:
        action = form.get("action") or ""
        assert (SKELETON / action.lstrip("/")).exists()

