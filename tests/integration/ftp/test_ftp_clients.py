"""ftplib, curl and lftp each deploy a site; syntax errors come back as a 550 reply."""

from __future__ import annotations

import ftplib
import stat
import subprocess
from pathlib import Path

import pytest
from ftp_harness import Gateway, require_tool, store

pytestmark = pytest.mark.integration

GOOD = b'print("Content-Type: text/plain")\nprint()\nprint("v2")\n'
BAD = b'print("Content-Type: text/plain")\nprint()\nif True print("oops")\n'


def local_site(root: Path) -> Path:
    (root / "cgi-bin" / "lib").mkdir(parents=True)
    (root / "htdocs").mkdir()
    (root / "cgi-bin" / "app.py").write_bytes(GOOD)
    (root / "cgi-bin" / "lib" / "helper.py").write_bytes(b"VALUE = 1\n")
    (root / "cgi-bin" / "run").write_bytes(b"#!/usr/bin/env python3\nprint('x')\n")
    (root / "htdocs" / "index.html").write_bytes(b"<h1>hi</h1>\n")
    return root


def assert_deployed(gateway: Gateway, source: Path) -> None:
    for path in source.rglob("*"):
        if path.is_file():
            live = gateway.site / path.relative_to(source)
            assert live.read_bytes() == path.read_bytes(), live
            mode = stat.S_IMODE(live.stat().st_mode)
            in_cgi = path.relative_to(source).parts[0] == "cgi-bin"
            assert mode == (0o755 if in_cgi else 0o644), (live, oct(mode))
    assert not any((gateway.site / ".cgirt" / "staging").iterdir())


def test_ftplib_deploys_and_each_publish_bumps_the_generation(gateway: Gateway) -> None:
    client = gateway.ftp()
    before = gateway.generation()
    reply = store(client, "cgi-bin/hello.py", GOOD)
    assert reply.startswith("226 ") and "published" in reply
    assert gateway.generation() == before + 1
    assert (gateway.site / "cgi-bin" / "hello.py").read_bytes() == GOOD
    client.mkd("cgi-bin/sub")
    assert gateway.generation() == before + 2
    store(client, "cgi-bin/sub/x.py", b"X = 1\n")
    client.rename("cgi-bin/sub/x.py", "cgi-bin/sub/y.py")
    assert gateway.generation() == before + 4
    client.delete("cgi-bin/sub/y.py")
    client.rmd("cgi-bin/sub")
    assert gateway.generation() == before + 6
    client.quit()
    log = gateway.deploy_log()
    for word in ("published /cgi-bin/hello.py", "created directory /cgi-bin/sub",
                 "renamed /cgi-bin/sub/x.py to /cgi-bin/sub/y.py", "deleted /cgi-bin/sub/y.py",
                 "removed directory /cgi-bin/sub"):
        assert word in log


def test_ftplib_syntax_error_keeps_old_version(gateway: Gateway) -> None:
    client = gateway.ftp()
    old = (gateway.site / "cgi-bin" / "hello.py").read_bytes()
    before = gateway.generation()
    with pytest.raises(ftplib.error_perm) as refused:
        store(client, "cgi-bin/hello.py", BAD)
    client.quit()
    lines = str(refused.value).splitlines()
    assert lines[0].startswith("550-/cgi-bin/hello.py was NOT published")
    assert any(line.startswith("550-/cgi-bin/hello.py, line 3: SyntaxError") for line in lines)
    assert lines[-1].startswith("550 ")
    assert (gateway.site / "cgi-bin" / "hello.py").read_bytes() == old
    assert gateway.generation() == before
    assert "rejected /cgi-bin/hello.py: /cgi-bin/hello.py, line 3" in gateway.deploy_log()


def test_shebang_script_without_extension_is_checked(gateway: Gateway) -> None:
    client = gateway.ftp()
    with pytest.raises(ftplib.error_perm, match="550-/cgi-bin/run was NOT published"):
        store(client, "cgi-bin/run", b"#!/usr/bin/python3\ndef (:\n")
    client.quit()
    assert not (gateway.site / "cgi-bin" / "run").exists()


def test_curl_uploads_creates_dirs_and_shows_the_rejection(gateway: Gateway, tmp_path: Path) -> None:
    curl = require_tool("curl")
    good, bad = tmp_path / "good.py", tmp_path / "bad.py"
    good.write_bytes(GOOD)
    bad.write_bytes(BAD)
    subprocess.run([curl, "-sS", "--ftp-create-dirs", "-T", str(good),
                    gateway.url("cgi-bin/new/dir/app.py")], check=True, timeout=60)
    live = gateway.site / "cgi-bin" / "new" / "dir" / "app.py"
    assert live.read_bytes() == GOOD and stat.S_IMODE(live.stat().st_mode) == 0o755
    out = subprocess.run([curl, "-sS", "-v", "-T", str(bad), gateway.url("cgi-bin/new/dir/app.py")],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "< 550-/cgi-bin/new/dir/app.py was NOT published" in out.stderr
    assert "line 3: SyntaxError" in out.stderr
    assert live.read_bytes() == GOOD


def test_lftp_mirror_deploys_a_whole_site(gateway: Gateway, tmp_path: Path) -> None:
    lftp = require_tool("lftp")
    source = local_site(tmp_path / "local")
    script = (f"set net:max-retries 1; set ftp:ssl-allow false; "
              f"open -u {gateway.user},'{gateway.password}' -p {gateway.port} {gateway.host}; "
              f"mirror -R --no-perms --verbose {source} /; bye")
    subprocess.run([lftp, "-c", script], check=True, capture_output=True, timeout=120)
    assert_deployed(gateway, source)


def test_lftp_shows_syntax_error_lines(gateway: Gateway, tmp_path: Path) -> None:
    lftp = require_tool("lftp")
    bad = tmp_path / "hello.py"
    bad.write_bytes(BAD)
    script = (f"set net:max-retries 1; set ftp:ssl-allow false; "
              f"open -u {gateway.user},'{gateway.password}' -p {gateway.port} {gateway.host}; "
              f"put {bad} -o /cgi-bin/hello.py; bye")
    out = subprocess.run([lftp, "-d", "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "550-/cgi-bin/hello.py was NOT published" in out.stdout + out.stderr
    assert b"v1" in (gateway.site / "cgi-bin" / "hello.py").read_bytes()


def test_appe_and_resumed_stor_are_refused(gateway: Gateway) -> None:
    client = gateway.ftp()
    with pytest.raises(ftplib.error_perm, match="550 APPE is not supported"):
        client.sendcmd("APPE cgi-bin/hello.py")
    client.voidcmd("TYPE I")
    client.sendcmd("REST 10")
    with pytest.raises(ftplib.error_perm, match="504 Resuming uploads is not supported"):
        client.sendcmd("STOR cgi-bin/hello.py")
    with pytest.raises(ftplib.error_perm, match="550 STOU is not supported"):
        client.sendcmd("STOU")
    client.quit()


def test_site_check_reload_help(gateway: Gateway) -> None:
    (gateway.site / "cgi-bin" / "broken.py").write_bytes(b"x = (\n")
    client = gateway.ftp()
    reply = client.sendcmd("SITE CHECK")
    assert "200-/cgi-bin/broken.py, line 1:" in reply
    assert reply.splitlines()[-1] == "200 SITE CHECK: 2 script(s) checked, 1 with errors."
    assert client.sendcmd("SITE CHECK cgi-bin/hello.py").endswith("1 script(s) checked, no errors.")
    assert "No runner is serving this site" in client.sendcmd("SITE RELOAD")
    help_text = client.sendcmd("SITE HELP")
    assert " CHECK" in help_text and " RELOAD" in help_text and " CHMOD" in help_text
    client.quit()
