"""Which mode runs a script: Python by the site contract's rule, anything else exec."""

from __future__ import annotations

from pathlib import Path

import pytest

from cgirt.runner.modes import MODE_FILE, ModePolicy

ALL = frozenset({"persistent", "fork", "exec"})


def script(root: Path, name: str, first_line: bytes) -> str:
    path = root / name
    path.write_bytes(first_line + b"\nbody\n")
    path.chmod(0o755)
    return str(path)


@pytest.mark.parametrize("name, first_line, mode", [
    ("hello.py", b"#!/bin/sh", "persistent"),
    ("hello", b"#!/usr/bin/env python3", "persistent"),
    ("hello", b"#!/usr/bin/python3.11 -u", "persistent"),
    ("count.pl", b"#!/opt/mypython/bin/perl", "exec"),  # once run in-process as Python
    ("count.pl", b"#!/usr/bin/perl", "exec"),
    ("run.sh", b"#!/bin/sh", "exec"),
])
def test_python_runs_in_the_default_mode_and_anything_else_is_exec(
        tmp_path: Path, name: str, first_line: bytes, mode: str) -> None:
    policy = ModePolicy("persistent", ALL)
    assert policy.mode_for(script(tmp_path, name, first_line), str(tmp_path)) == mode


def test_an_edited_shebang_is_seen(tmp_path: Path) -> None:
    policy = ModePolicy("persistent", ALL)
    path = script(tmp_path, "run", b"#!/usr/bin/python3")
    assert policy.mode_for(path, str(tmp_path)) == "persistent"
    script(tmp_path, "run", b"#!/opt/python3/bin/perl -w")  # the size changes with it
    assert policy.mode_for(path, str(tmp_path)) == "exec"


def test_a_mode_file_chooses_for_python_only(tmp_path: Path) -> None:
    sub = tmp_path / "sub"
    sub.mkdir()
    (tmp_path / MODE_FILE).write_text("fork\n")
    policy = ModePolicy("persistent", ALL)
    assert policy.mode_for(script(sub, "a.py", b""), str(tmp_path)) == "fork"
    assert policy.mode_for(script(sub, "a.pl", b"#!/opt/mypython/bin/perl"), str(tmp_path)) == "exec"
