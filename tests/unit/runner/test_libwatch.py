"""Writes to library modules: noted when the site's code makes them, not when a library does."""

from __future__ import annotations

import email
import json
import sys
import types
from pathlib import Path
from typing import Iterator

import pytest

from cgirt.runner.libwatch import LibraryWatch


@pytest.fixture
def watch(tmp_path: Path) -> Iterator[LibraryWatch]:
    w = LibraryWatch(str(tmp_path / "site"))
    yield w
    w.close()


def run_as(path: Path, source: str) -> None:
    """Execute `source` as code from `path` (what a script's frames say they are)."""
    exec(compile(source, str(path), "exec"), {"json": json, "email": email, "sys": sys})


def test_a_script_setting_a_library_attribute_is_noted(watch: LibraryWatch, tmp_path: Path) -> None:
    script = tmp_path / "site" / "cgi-bin" / "s.py"
    run_as(script, "json.cgirt_leftover = 1\nsetattr(json, 'dumps', json.dumps)\n")
    try:
        assert watch.changes() == [("json", "cgirt_leftover"), ("json", "dumps")]
        assert watch.changes() == []  # reported once
        run_as(script, "del json.cgirt_leftover\n")
        assert watch.changes() == [("json", "cgirt_leftover")]
    finally:
        json.__dict__.pop("cgirt_leftover", None)


def test_library_code_writing_is_not_noted(watch: LibraryWatch, tmp_path: Path) -> None:
    run_as(tmp_path / "elsewhere" / "lib.py", "json.cgirt_leftover = 1\n")
    del json.cgirt_leftover  # type: ignore[attr-defined]  # this test file is not the site
    assert watch.changes() == []


def test_settings_put_back_after_each_request_are_not_noted(watch: LibraryWatch, tmp_path: Path) -> None:
    run_as(tmp_path / "site" / "s.py", "import tempfile\ntempfile.tempdir = tempfile.tempdir\n")
    assert watch.changes() == []


def test_an_import_binding_a_submodule_is_not_noted(watch: LibraryWatch, tmp_path: Path) -> None:
    sys.modules.pop("email.quoprimime", None)
    email.__dict__.pop("quoprimime", None)
    run_as(tmp_path / "site" / "s.py", "import email.quoprimime\n")
    assert watch.changes() == []


def test_modules_imported_later_are_watched_from_the_next_request(
        watch: LibraryWatch, tmp_path: Path) -> None:
    module = types.ModuleType("cgirt_tests_late")
    sys.modules["cgirt_tests_late"] = module
    try:
        run_as(tmp_path / "site" / "s.py", "import cgirt_tests_late\ncgirt_tests_late.x = 1\n")
        assert watch.changes() == []  # imported during the request: its state is its own
        watch.watch_new()
        run_as(tmp_path / "site" / "s.py", "import cgirt_tests_late\ncgirt_tests_late.x = 2\n")
        assert watch.changes() == [("cgirt_tests_late", "x")]
    finally:
        del sys.modules["cgirt_tests_late"]


def test_site_modules_and_sys_are_not_watched(watch: LibraryWatch, tmp_path: Path) -> None:
    own = types.ModuleType("cgirt_tests_site_helper")
    own.__file__ = str(tmp_path / "site" / "cgi-bin" / "cgirt_tests_site_helper.py")
    sys.modules["cgirt_tests_site_helper"] = own
    try:
        watch.watch_new()
        assert type(own) is types.ModuleType and type(sys) is types.ModuleType
        assert type(json) is not types.ModuleType and isinstance(json, types.ModuleType)
    finally:
        del sys.modules["cgirt_tests_site_helper"]
