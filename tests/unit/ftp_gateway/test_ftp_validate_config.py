"""Script validation, the config object, and error-to-reply translation."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from cgirt.config import parse_values
from ftp_gateway.config import GatewayConfig, config_from, parse_listen, parse_port_range
from ftp_gateway.errors import (ConfigError, QuotaExceeded, ResumeRefused, UploadRejected,
                                 reply_for)
from ftp_gateway.validate import check_file, check_source, is_python, python_files


@pytest.mark.parametrize("name, head, expected", [
    ("a.py", b"", True),
    ("run", b"#!/usr/bin/env python3\n", True),
    ("run", b"#!/usr/bin/python3.11 -u\n", True),
    ("run", b"#!/bin/sh\n", False),
    ("page.html", b"<html>", False),
    ("run.pl", b"#!/opt/python/bin/perl\nprint 1;\n", False),
])
def test_is_python(name: str, head: bytes, expected: bool) -> None:
    # The gateway uses the site contract's rule (cgirt.site.is_python), as the runner does.
    assert is_python(name, head) is expected


@pytest.mark.parametrize("shebang", [b"#!/opt/python/bin/perl", b"#!/opt/mypython/bin/perl"])
def test_a_perl_script_under_a_python_directory_is_published_uncompiled(
        tmp_path: Path, shebang: bytes) -> None:
    script = tmp_path / "count.cgi"
    script.write_bytes(shebang + b'\nprint "Content-Type: text/plain\\n\\n", 1 + 1;\n')
    assert check_file(script, "/cgi-bin/count.cgi") is None  # not refused as broken Python
    assert list(python_files(tmp_path, tmp_path / ".cgirt")) == []


@pytest.mark.parametrize("source, line, fragment", [
    (b"x = (\n", 1, "SyntaxError"),
    (b"ok = 1\nif True print(1)\n", 2, "SyntaxError"),
    (b"def f():\nreturn 1\n", 2, "IndentationError"),
    (b"x = 1\x00\n", 0, "SyntaxError"),
    (b"# -*- coding: latin-1 -*-\nx = '\xe9'\n", None, None),
    (b"x = '\xff'\n", 1, "SyntaxError"),
])
def test_check_source(source: bytes, line: int | None, fragment: str | None) -> None:
    finding = check_source(source, "/cgi-bin/x.py")
    if fragment is None:
        assert finding is None
    else:
        assert finding is not None and fragment in finding.message
        assert finding.path == "/cgi-bin/x.py"
        if line:
            assert finding.line == line
            assert finding.describe().startswith(f"/cgi-bin/x.py, line {line}: ")


def test_check_file_uses_final_name_for_staged_files(tmp_path: Path) -> None:
    staged = tmp_path / ".upload-123.part"
    staged.write_bytes(b"x = (\n")
    assert check_file(staged, "/x.py") is None  # not Python by its own name
    assert check_file(staged, "/x.py", "x.py") is not None


def test_python_files_skips_state_and_symlinks(tmp_path: Path) -> None:
    (tmp_path / ".cgirt").mkdir()
    (tmp_path / ".cgirt" / "a.py").write_text("x")
    (tmp_path / "b.py").write_text("x")
    (tmp_path / "c.txt").write_text("x")
    (tmp_path / "link.py").symlink_to(tmp_path / "b.py")
    assert [p.name for p in python_files(tmp_path, tmp_path / ".cgirt")] == ["b.py"]


def test_config_defaults_and_implications(tmp_path: Path) -> None:
    config = GatewayConfig(users_file=tmp_path / "u.json")
    assert config.host == "127.0.0.1" and not config.tls
    assert GatewayConfig(users_file=tmp_path / "u.json", require_tls=True).tls
    assert config.self_signed_dir == tmp_path
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 1  # type: ignore[misc]


@pytest.mark.parametrize("changes", [
    {"port": 70000}, {"quota_bytes": -1}, {"idle_timeout": -1}, {"completion_grace": 60},
    {"passive_ports": (80, 90)}, {"passive_ports": (6000, 5000)},
    {"masquerade_address": "example"}, {"banner": "x" * 80}, {"banner": "a\r\nb"},
    {"tls_key": Path("/k.pem")},
])
def test_config_rejects(tmp_path: Path, changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        GatewayConfig(users_file=tmp_path / "u.json", **changes)  # type: ignore[arg-type]


def test_parsers() -> None:
    assert parse_listen("0.0.0.0:21") == ("0.0.0.0", 21)
    assert parse_listen("[::1]:2121") == ("::1", 2121)
    assert parse_port_range("60000-60010") == (60000, 60010)
    with pytest.raises(ConfigError):
        parse_listen("21")
    with pytest.raises(ConfigError):
        parse_port_range("a-b")


def test_reply_for_is_one_line_with_code() -> None:
    assert reply_for(QuotaExceeded("over\r\n226 fake")) == "552 over 226 fake"
    assert reply_for(ResumeRefused("no")) == "504 no"


def test_rejection_reply_keeps_its_lines_and_smuggles_none() -> None:
    err = UploadRejected("Upload rejected.\r\n226 fake", ("a.py was NOT published.", "x\r\n226 y"))
    assert reply_for(err).split("\r\n") == [
        "550-a.py was NOT published.", "550-x 226 y", "550 Upload rejected. 226 fake"]


def test_log_file_in_the_table_is_relative_to_the_file(tmp_path: Path) -> None:
    values, issues = parse_values(GatewayConfig, {"users": "users.json", "log_file": "logs/ftp.log"},
                                  base=tmp_path)
    assert issues == []
    assert config_from(values).log_file == tmp_path / "logs" / "ftp.log"
