"""Static file lookup: what is served, what is refused, and with which type."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cgirt.devserver import staticfiles as sf


@pytest.fixture
def docroot(tmp_path: Path) -> str:
    root = tmp_path / "htdocs"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "index.html").write_text("index")
    (root / "empty").mkdir()
    (root / "page.html").write_text("page")
    (root / ".env").write_text("secret")
    (tmp_path / "outside.txt").write_text("outside")
    (root / "out").symlink_to(tmp_path / "outside.txt")
    (root / "loop").symlink_to(root / "loop")
    os.mkfifo(root / "fifo")
    return os.path.realpath(root)


def test_file(docroot: str) -> None:
    found = sf.lookup(docroot, "/page.html")
    assert isinstance(found, sf.StaticFile)
    assert found.size == 4 and found.content_type == "text/html; charset=utf-8"


def test_directory_index_and_redirect(docroot: str) -> None:
    found = sf.lookup(docroot, "/dir/")
    assert isinstance(found, sf.StaticFile) and found.path.endswith("/dir/index.html")
    assert sf.lookup(docroot, "/dir") == sf.Redirect("/dir/")
    with pytest.raises(sf.NotFound):
        sf.lookup(docroot, "/empty/")


@pytest.mark.parametrize("path, error", [
    ("/missing", sf.NotFound), ("/page.html/more", sf.NotFound),
    ("/.env", sf.ForbiddenPath), ("/dir/../.env", sf.ForbiddenPath), ("/..", sf.ForbiddenPath),
    ("/out", sf.ForbiddenPath), ("/fifo", sf.ForbiddenPath), ("/loop", sf.ForbiddenPath),
])
def test_refused(docroot: str, path: str, error: type[sf.StaticError]) -> None:
    with pytest.raises(error):
        sf.lookup(docroot, path)


def test_redirect_location_is_quoted(docroot: str) -> None:
    os.mkdir(os.path.join(docroot, "a b"))
    assert sf.lookup(docroot, "/a b") == sf.Redirect("/a%20b/")


@pytest.mark.parametrize("raw, decoded", [
    ("/a%20b", "/a b"), ("/%2e%2e/x", "/../x"), ("/caf%C3%A9", "/café"),
    ("/bad%FF", "/bad\udcff"),
])
def test_decode_path(raw: str, decoded: str) -> None:
    assert sf.decode_path(raw) == decoded


@pytest.mark.parametrize("path, normal", [
    ("/", "/"), ("//", "/"), ("/a//b", "/a/b"), ("/a/./b", "/a/b"), ("/a/b/../c", "/a/c"),
    ("/a/", "/a/"), ("/a/.", "/a/"), ("/a/b/..", "/a/"), ("/a/..", "/"), ("/a//", "/a/"),
    ("/a/...", "/a/..."), ("/.x/y", "/.x/y"),
])
def test_normalise_as_nginx(path: str, normal: str) -> None:
    assert sf.normalise(path) == normal


@pytest.mark.parametrize("path", ["/..", "/../x", "/a/../../x", "/a/./../.."])
def test_normalise_refuses_climbing_above_the_root(path: str) -> None:
    with pytest.raises(sf.BadPath):
        sf.normalise(path)


def test_decode_path_refuses_nul() -> None:
    with pytest.raises(sf.BadPath):
        sf.decode_path("/a%00b")


@pytest.mark.parametrize("name, expected", [
    ("a.html", "text/html; charset=utf-8"), ("a.css", "text/css; charset=utf-8"),
    ("a.png", "image/png"), ("a.tar.gz", "application/octet-stream"),
    ("a.unknown-ext", "application/octet-stream"), ("noext", "application/octet-stream"),
])
def test_content_type(name: str, expected: str) -> None:
    assert sf.content_type(name) == expected


def test_open_refuses_a_symlink_swapped_in(docroot: str, tmp_path: Path) -> None:
    found = sf.lookup(docroot, "/page.html")
    assert isinstance(found, sf.StaticFile)
    os.unlink(found.path)
    os.symlink(tmp_path / "outside.txt", found.path)
    with pytest.raises(sf.ForbiddenPath):
        sf.open_file(found)
