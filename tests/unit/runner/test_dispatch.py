"""URL → script: Apache's PATH_INFO split, and hostile paths that must never run anything."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cgirt.runner.dispatch import Dispatcher
from cgirt.errors import BadRequest, Forbidden, ScriptNotFound


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    (site / "cgi-bin" / "sub").mkdir(parents=True)
    (site / "cgi-bin" / "a.py").write_text("")
    (site / "cgi-bin" / "sub" / "b.py").write_text("")
    (site / "cgi-bin" / ".hidden.py").write_text("")
    (site / "cgi-bin" / ".cgirt-mode").write_text("fork")
    (site / "htdocs").mkdir()
    (site / "secret.py").write_text("")
    (tmp_path / "outside.py").write_text("")
    os.symlink(tmp_path / "outside.py", site / "cgi-bin" / "escape.py")
    os.symlink(site / "cgi-bin" / "a.py", site / "cgi-bin" / "alias.py")
    os.symlink(tmp_path, site / "cgi-bin" / "updir")
    return site


def d(site: Path) -> Dispatcher:
    return Dispatcher(site, (("/cgi-bin", "cgi-bin"),))


@pytest.mark.parametrize("url, script, script_name, path_info", [
    ("/cgi-bin/a.py", "cgi-bin/a.py", "/cgi-bin/a.py", ""),
    ("/cgi-bin/a.py/x/y", "cgi-bin/a.py", "/cgi-bin/a.py", "/x/y"),
    ("/cgi-bin/a.py/", "cgi-bin/a.py", "/cgi-bin/a.py", "/"),
    ("/cgi-bin/sub/b.py/z", "cgi-bin/sub/b.py", "/cgi-bin/sub/b.py", "/z"),
    ("/cgi-bin/alias.py", "cgi-bin/a.py", "/cgi-bin/alias.py", ""),
])
def test_path_info_split(site: Path, url: str, script: str, script_name: str, path_info: str) -> None:
    t = d(site).resolve_url(url)
    assert (t.path, t.script_name, t.path_info) == (
        os.path.realpath(site / script), script_name, path_info)


@pytest.mark.parametrize("url, error", [
    ("/cgi-bin/missing.py", ScriptNotFound),
    ("/cgi-bin/../secret.py", ScriptNotFound),
    ("/cgi-bin/sub/../../secret.py", ScriptNotFound),
    ("/cgi-bin/./a.py", ScriptNotFound),
    ("/cgi-bin/.hidden.py", Forbidden),
    ("/cgi-bin/.cgirt-mode", Forbidden),
    ("/cgi-bin/escape.py", Forbidden),
    ("/cgi-bin/updir/outside.py", Forbidden),
    ("/cgi-bin/sub", Forbidden),
    ("/cgi-bin/", Forbidden),
    ("/cgi-bin", Forbidden),
    ("/secret.py", ScriptNotFound),
    ("/cgi-binx/a.py", ScriptNotFound),
    ("/cgi-bin/a.py\x00.txt", BadRequest),
])
def test_hostile_paths(site: Path, url: str, error: type) -> None:
    with pytest.raises(error):
        d(site).resolve_url(url)


def test_script_filename_inside_a_root_is_honoured(site: Path) -> None:
    t = d(site).resolve({"SCRIPT_FILENAME": str(site / "cgi-bin" / "a.py"), "SCRIPT_NAME": "/x/a.py",
                         "PATH_INFO": "/info"})
    assert (t.path, t.script_name, t.path_info) == (str(site / "cgi-bin" / "a.py"), "/x/a.py", "/info")


def test_script_filename_with_path_info_appended(site: Path) -> None:
    t = d(site).resolve({"SCRIPT_FILENAME": str(site / "cgi-bin" / "a.py") + "/more",
                         "SCRIPT_NAME": "/cgi-bin/a.py/more"})
    assert (t.script_name, t.path_info) == ("/cgi-bin/a.py", "/more")


@pytest.mark.parametrize("filename", ["/etc/passwd", "{site}/secret.py", "{site}/cgi-bin/../secret.py"])
def test_script_filename_outside_the_roots_is_never_run(site: Path, filename: str) -> None:
    params = {"SCRIPT_FILENAME": filename.format(site=site), "SCRIPT_NAME": "/cgi-bin/nothing.py"}
    with pytest.raises(ScriptNotFound):
        d(site).resolve(params)


def test_script_filename_symlink_out_is_refused(site: Path) -> None:
    with pytest.raises(Forbidden):
        d(site).resolve({"SCRIPT_FILENAME": str(site / "cgi-bin" / "escape.py")})


def test_real_path_agrees_with_realpath(tmp_path: Path) -> None:
    from cgirt.runner.dispatch import _real_path

    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "s.py").write_text("")
    (tmp_path / "link").symlink_to(tmp_path / "a")
    (tmp_path / "a" / "b" / "alias.py").symlink_to("s.py")
    for p in ("a/b/s.py", "link/b/s.py", "link/b/alias.py", "link/../a/b/alias.py"):
        assert _real_path(str(tmp_path / p)) == os.path.realpath(tmp_path / p)


@pytest.mark.parametrize("by", ["SCRIPT_FILENAME", "URL"])
def test_a_remembered_script_that_now_leads_outside_is_refused(site: Path, tmp_path: Path, by: str) -> None:
    # An answer is remembered while the path it was found at leads to the same file; a
    # directory on the way that becomes a symlink out of the root leads to another file.
    dispatcher = d(site)
    params = ({"SCRIPT_FILENAME": str(site / "cgi-bin/sub/b.py"), "SCRIPT_NAME": "/cgi-bin/sub/b.py"}
              if by == "SCRIPT_FILENAME" else {"REQUEST_URI": "/cgi-bin/sub/b.py?x=1"})
    first = dispatcher.resolve(params)
    assert first.path == os.path.realpath(site / "cgi-bin/sub/b.py")
    again = dispatcher.resolve(params)
    assert (again.path, again.script_name, again.path_info) == (first.path, "/cgi-bin/sub/b.py", "")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "b.py").write_text("")
    os.rename(site / "cgi-bin" / "sub", tmp_path / "old-sub")
    os.symlink(tmp_path / "elsewhere", site / "cgi-bin" / "sub")
    with pytest.raises(Forbidden):
        dispatcher.resolve(params)


def test_a_remembered_script_replaced_by_a_directory_is_not_run(site: Path) -> None:
    dispatcher = d(site)
    params = {"SCRIPT_FILENAME": str(site / "cgi-bin/a.py/more"), "SCRIPT_NAME": "/cgi-bin/a.py/more"}
    assert dispatcher.resolve(params).path_info == "/more"
    os.unlink(site / "cgi-bin" / "a.py")
    (site / "cgi-bin" / "a.py").mkdir()
    (site / "cgi-bin" / "a.py" / "more").write_text("")
    target = dispatcher.resolve(params)
    assert (target.path, target.path_info) == (os.path.realpath(site / "cgi-bin/a.py/more"), "")
