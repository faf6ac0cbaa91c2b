"""A site's modules: share-nothing (executed afresh by each request, compiled once), unless
their directory keeps them loaded and the admin allows it."""

from __future__ import annotations

import importlib
import logging
import sys
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
