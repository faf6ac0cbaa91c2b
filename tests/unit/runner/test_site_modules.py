"""A site's modules: share-nothing (executed afresh by each request, compiled once), unless
their directory keeps them loaded and the admin allows it."""

from __future__ import annotations

import importlib
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from cgirt.runner import cache
from cgirt.runner.cache import KEEP_FILE, SiteModules, install_site_loader


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "site"
    (root / "cgi-bin").mkdir(parents=True)
    (root / "cgi-bin" / "cgirt_tests_helper.py").write_text("STATE = []\nSTATE.append(1)\n")
    hooks, bytecode = list(sys.path_hooks), sys.dont_write_bytecode
    sys.path.insert(0, str(root / "cgi-bin"))
    yield root
    sys.path.remove(str(root / "cgi-bin"))
    sys.path_hooks[:] = hooks
    sys.path_importer_cache.clear()
    sys.dont_write_bytecode = bytecode
    sys.modules.pop("cgirt_tests_helper", None)


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []

    def counting(source: Any, filename: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(filename)
        return compile(source, filename, *args, **kwargs)
    monkeypatch.setattr(cache, "compile", counting, raising=False)
    return seen


def request(modules: SiteModules) -> int:
    """What a request does: refresh, import the helper, run, collect."""
    modules.refresh()
    helper = importlib.import_module("cgirt_tests_helper")
    helper.STATE.append(2)
    modules.collect()
    return len(helper.STATE)


def test_site_modules_start_fresh_and_are_compiled_once(site: Path, compiles: list[str]) -> None:
    modules = SiteModules(str(site))
    install_site_loader(modules)
    assert [request(modules) for _ in range(3)] == [2, 2, 2]
    assert "cgirt_tests_helper" not in sys.modules
    assert compiles == [str(site / "cgi-bin" / "cgirt_tests_helper.py")]
    (site / "cgi-bin" / "cgirt_tests_helper.py").write_text("STATE = [0, 0]\n")
    assert request(modules) == 3
    assert len(compiles) == 2


def test_a_keep_file_keeps_them_until_it_goes(site: Path, compiles: list[str]) -> None:
    (site / KEEP_FILE).write_text("")  # above cgi-bin/: applies to everything below it
    modules = SiteModules(str(site))
    install_site_loader(modules)
    assert [request(modules) for _ in range(3)] == [2, 3, 4]
    (site / KEEP_FILE).unlink()
    assert [request(modules) for _ in range(2)] == [2, 2]
    assert len(compiles) == 1  # dropped, not recompiled: the file did not change


def test_the_admin_can_refuse(site: Path, caplog: pytest.LogCaptureFixture) -> None:
    (site / "cgi-bin" / KEEP_FILE).write_text("")
    modules = SiteModules(str(site), allow_keep=False)
    install_site_loader(modules)
    with caplog.at_level(logging.WARNING, "cgirt.error"):
        assert [request(modules) for _ in range(3)] == [2, 2, 2]
    refused = [r for r in caplog.records if "not allowed here" in r.getMessage()]
    assert len(refused) == 1 and KEEP_FILE in refused[0].getMessage()


def _age(directory: Path) -> None:
    """Past the racy window, as a directory of a site served for a while is."""
    old = time.time() - 60
    os.utime(directory, (old, old))


def _site_finder(site: Path) -> cache.SiteFinder:
    finder = sys.path_importer_cache[str(site / "cgi-bin")]
    assert isinstance(finder, cache.SiteFinder)
    return finder


def test_what_the_finder_found_is_remembered_while_its_directory_is_unchanged(site: Path) -> None:
    modules = SiteModules(str(site))
    install_site_loader(modules)
    _age(site / "cgi-bin")
    assert [request(modules) for _ in range(2)] == [2, 2]
    finder = _site_finder(site)
    assert "cgirt_tests_helper" in finder._found  # the second import was answered from it
    first = importlib.import_module("cgirt_tests_helper")
    spec = first.__spec__
    assert spec is not None and spec.origin == str(site / "cgi-bin" / "cgirt_tests_helper.py")
    assert first.__file__ == spec.origin and first.__cached__ == spec.cached is not None
    modules.collect()
    # A package of the same name, added next to it, wins from the next import on, as it
    # does for Python's own finder: the directory's mtime changed.
    package = site / "cgi-bin" / "cgirt_tests_helper"
    package.mkdir()
    (package / "__init__.py").write_text("STATE = ['package']\n")
    assert request(modules) == 2
    helper = importlib.import_module("cgirt_tests_helper")
    assert helper.STATE[0] == "package" and helper.__path__ == [str(package)]
    modules.collect()


def test_a_helper_removed_is_gone_on_the_next_import(site: Path) -> None:
    modules = SiteModules(str(site))
    install_site_loader(modules)
    _age(site / "cgi-bin")
    assert [request(modules) for _ in range(2)] == [2, 2]
    (site / "cgi-bin" / "cgirt_tests_helper.py").unlink()
    with pytest.raises(ModuleNotFoundError):
        request(modules)
    modules.collect()


def test_nothing_is_remembered_within_the_racy_window(site: Path) -> None:
    modules = SiteModules(str(site))
    install_site_loader(modules)
    os.utime(site / "cgi-bin")  # now: a change in this clock tick would not show in the mtime
    assert request(modules) == 2
    assert "cgirt_tests_helper" not in _site_finder(site)._found
