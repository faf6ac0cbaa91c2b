"""Issue 11, point 2: no state outlives a request in persistent mode. Real runners, spoken to
over FastCGI; the corpus scripts change the interpreter, the probes print what they see."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from tests.integration.test_runner import get
from tests.support.procs import wait_for
from tests.support.servers import Runner

pytestmark = pytest.mark.integration


def probe(runner: Runner) -> tuple[int, str]:
    text = get(runner, "/cgi-bin/probe_interpreter.py")
    assert text.startswith("200 "), text
    first, rest = text[4:].split("\n", 1)
    return int(first.removeprefix("pid=")), rest


def changer(runner: Runner, query: str = "") -> int:
    text = get(runner, "/cgi-bin/change_interpreter.py", query)
    assert text.startswith("200 changed in "), text
    return int(text.split()[-1])


def error_log(site: Path) -> str:
    path = site / ".cgirt" / "logs" / "error.log"
    return path.read_text() if path.exists() else ""


def test_interpreter_settings_are_pristine_for_every_request(
        site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=2)
    _, pristine = probe(runner)
    assert "recursion_limit=1000" in pristine and "json_leftover=False" in pristine
    changed_in = set()
    for i in range(50):
        changed_in.add(changer(runner))
        _, seen = probe(runner)
        assert seen == pristine, f"request {i}"
    # Put back, not replaced: the two workers served every change.
    assert changed_in <= set(runner.worker_pids()) and len(changed_in) <= 2
    assert "worker will be replaced" not in error_log(site)


def test_lasting_changes_replace_the_worker_and_say_why(
        site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=2)
    _, pristine = probe(runner)
    changed_in = []
    for i in range(6):
        changed_in.append(changer(runner, "lasting"))
        _, seen = probe(runner)
        assert seen == pristine, f"request {i}"
    assert len(set(changed_in)) == 6  # each worker that made a lasting change was replaced
    wait_for(lambda: not set(changed_in) & set(runner.worker_pids()), 20, "the workers to go")
    log = error_log(site)
    script = "cgi-bin/change_interpreter.py: "
    for what in ("changed json.cgirt_leftover, in a library module", "raised the niceness to 1",
                 "lowered the hard limit RLIMIT_FSIZE"):
        lines = [line for line in log.splitlines() if what in line]
        assert len(lines) == 6, (what, log)
        assert all(script in line and "will be replaced" in line for line in lines)


def test_demandimport_does_not_reach_the_next_script(
        site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=1)
    expected = ("200 module types\nmodule xml.etree.ElementTree\nmodule email.mime.text\n"
                "module site_state\nb\n")
    for _ in range(5):
        assert get(runner, "/cgi-bin/lazy_imports.py") == "200 imports are lazy now\n"
        assert get(runner, "/cgi-bin/plain_imports.py") == expected


def test_site_modules_start_fresh_for_every_request(
        site: Path, start_runner: Callable[..., Runner]) -> None:
    runner = start_runner(site, workers=1)
    (worker,) = runner.worker_pids()
    for _ in range(5):
        assert get(runner, "/cgi-bin/count_visits.py") == f"200 visits=1 pid={worker}\n"


def test_a_directory_can_keep_its_modules_loaded(
        site: Path, start_runner: Callable[..., Runner]) -> None:
    (site / "cgi-bin" / ".cgirt-keep-modules").write_text("")
    runner = start_runner(site, workers=1)
    (worker,) = runner.worker_pids()
    for n in range(1, 6):
        assert get(runner, "/cgi-bin/count_visits.py") == f"200 visits={n} pid={worker}\n"
    # Taking the file away makes them fresh again, without a restart.
    (site / "cgi-bin" / ".cgirt-keep-modules").unlink()
    for _ in range(2):
        assert get(runner, "/cgi-bin/count_visits.py") == f"200 visits=1 pid={worker}\n"


def test_the_admin_can_refuse_to_keep_modules(
        site: Path, tmp_path: Path, start_runner: Callable[..., Runner]) -> None:
    (site / "cgi-bin" / ".cgirt-keep-modules").write_text("")
    config = tmp_path / "runner.toml"
    config.write_text("[runner]\nallow_keep_modules = false\n")
    runner = start_runner(site, "--config", str(config), workers=1)
    for _ in range(3):
        assert get(runner, "/cgi-bin/count_visits.py").startswith("200 visits=1 ")
    refusal = "asks to keep modules loaded between requests, which is not allowed"
    assert runner.proc.output().count(refusal) == 1
    assert f"cgi-bin/.cgirt-keep-modules: {refusal}" in error_log(site)  # the owner sees it


def test_a_bad_keep_modules_setting_is_refused_at_start(site: Path, tmp_path: Path) -> None:
    config = tmp_path / "runner.toml"
    config.write_text('[runner]\nallow_keep_modules = "no"\n')
    done = subprocess.run(
        [sys.executable, "-m", "cgirt", "serve", "--site", str(site), "--listen",
         f"unix:{tmp_path / 'r.sock'}", "--config", str(config)],
        capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert "allow_keep_modules must be true or false, not 'no'" in done.stderr
    assert not (tmp_path / "r.sock").exists()
