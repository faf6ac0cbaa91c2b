"""Links that are the site's own keep working for root's gateway: the admin's site path
through a link, the owner's links to their own folders and files inside the site."""

from __future__ import annotations

import ftplib
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from ftp_harness import Gateway, make_site, store

pytestmark = pytest.mark.integration


def test_the_sites_own_links_work_for_every_command(tmp_path: Path,
                                                    gateway_factory: Callable[..., Gateway]
                                                    ) -> None:
    real = make_site(tmp_path / "srv" / "site")
    site = tmp_path / "www"
    site.symlink_to(real)  # the admin's site path is a link
    (real / "common").mkdir()
    (real / "htdocs" / "img").symlink_to("../common")
    (real / "htdocs" / "v2.txt").write_bytes(b"version 2\n")
    (real / "htdocs" / "current.txt").symlink_to("v2.txt")
    gateway = gateway_factory(site=site)
    client = gateway.ftp()

    assert store(client, "htdocs/img/logo.txt", b"logo\n").startswith("226")
    assert (real / "common" / "logo.txt").read_bytes() == b"logo\n"
    assert store(client, "cgi-bin/new.py", b"print()\n").startswith("226")
    assert stat.S_IMODE(os.stat(real / "cgi-bin" / "new.py").st_mode) == 0o755
    got: list[bytes] = []
    client.retrbinary("RETR htdocs/current.txt", got.append)
    assert b"".join(got) == b"version 2\n"
    assert {"img", "current.txt", "v2.txt"} <= set(client.nlst("htdocs"))
    assert "logo.txt" in client.nlst("htdocs/img")
    client.sendcmd("SITE CHMOD 600 htdocs/current.txt")  # the link's file, as before
    assert stat.S_IMODE(os.stat(real / "htdocs" / "v2.txt").st_mode) == 0o600
    client.mkd("htdocs/img/sub")
    assert (real / "common" / "sub").is_dir()
    client.rename("htdocs/img/logo.txt", "htdocs/img/sub/logo.txt")
    assert (real / "common" / "sub" / "logo.txt").read_bytes() == b"logo\n"
    client.delete("htdocs/img/sub/logo.txt")
    client.rmd("htdocs/img/sub")
    assert os.listdir(real / "common") == []
    client.delete("htdocs/current.txt")  # the link itself goes, never its file
    assert not (real / "htdocs" / "current.txt").is_symlink()
    assert (real / "htdocs" / "v2.txt").read_bytes() == b"version 2\n"
    with pytest.raises(ftplib.error_perm, match="^550"):
        client.sendcmd("SITE CHMOD 644 htdocs/nothing.txt")
    client.quit()
    assert "refused" not in gateway.log()
    assert os.listdir(real / ".cgirt" / "staging") == []
