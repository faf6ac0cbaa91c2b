"""The access log line: Combined Log Format, escaping, extras."""

from __future__ import annotations

import re
from pathlib import Path

from cgirt.logfiles import LogFile
from cgirt.runner.accesslog import AccessLog, escape


def test_escape_leaves_plain_text_and_escapes_what_could_forge_a_field() -> None:
    assert escape("GET /cgi-bin/a.py?x=1") == "GET /cgi-bin/a.py?x=1"
    assert escape('a "b" \\ c') == 'a \\"b\\" \\\\ c'
    assert escape("line\nnext\x7f") == "line\\x0anext\\x7f"
    assert escape("caf\u00e9") == "caf\\xc3\\xa9"
    assert escape("bad\udcff") == "bad\\xff"  # a byte that was not UTF-8


def test_a_line_has_the_combined_fields_then_the_extras(tmp_path: Path) -> None:
    log = AccessLog(LogFile(tmp_path / "access.log"))
    log.open()
    params = {"REMOTE_ADDR": "192.0.2.7", "REQUEST_METHOD": "GET", "REQUEST_URI": "/cgi-bin/a.py?q",
              "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_USER_AGENT": "curl/8", "REMOTE_USER": "ann"}
    log.write(params, 1_700_000_000.5, 0.0123456, 200, 14, 70, "fork")
    log.write({}, 1_700_000_000.9, 0.001, 0, 0, 0, "-")
    first, second = (tmp_path / "access.log").read_text().splitlines()
    assert re.fullmatch(
        r'192\.0\.2\.7 - ann \[\d{2}/Nov/2023:\d{2}:\d{2}:\d{2} [+-]\d{4}\] '
        rf'"GET /cgi-bin/a\.py\?q HTTP/1\.1" 200 14 "-" "curl/8" 0\.012346 {log._pid} fork 70',
        first), first
    assert second.startswith("- - - [") and second.endswith(f'"- - -" - - "-" "-" 0.001000 {log._pid} - 0')
