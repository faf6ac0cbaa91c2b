"""ARCHITECTURE.md stays the map of the code: every module is on it and says its one job."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODULES = sorted(p.relative_to(ROOT).as_posix()
                 for package in ("cgirt", "ftp_gateway") for p in (ROOT / package).rglob("*.py"))


def test_there_are_modules_to_check() -> None:
    assert "cgirt/runner/app.py" in MODULES and "ftp_gateway/publish.py" in MODULES


@pytest.mark.parametrize("module", MODULES)
def test_every_module_is_on_the_map(module: str) -> None:
    assert f"`{module}`" in (ROOT / "ARCHITECTURE.md").read_text(), \
        f"{module} is not named in ARCHITECTURE.md: add it with its one job"


@pytest.mark.parametrize("module", MODULES)
def test_every_module_says_its_job_in_its_first_line(module: str) -> None:
    doc = ast.get_docstring(ast.parse((ROOT / module).read_text()))
    assert doc, f"{module} has no docstring"
    lines = doc.splitlines()
    # A summary line of its own (PEP 257): the job in one line, any detail after a blank line.
    assert lines[0].strip() and (len(lines) == 1 or not lines[1].strip()), \
        f"{module}: the docstring's first line is not a one-line summary: {lines[:2]}"


def test_the_repository_stands_alone() -> None:
    """Design notes kept outside the repository are never cited from it: say the fact."""
    outside = ("DESIGN" + ".md", "DEPENDENCIES" + ".md", "../" + "shared")
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    found = []
    for name in tracked:
        path = ROOT / name
        if path.suffix not in (".py", ".md", ".toml", ".conf", ".cfg", ".txt", "") or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        found += [f"{name}: {word}" for word in outside if word in text]
    assert not found, found
