"""Why INSTALL.md requires `performance.stat-prefetch off` on a GlusterFS volume: with
md-cache on, as gluster ships, a forced stat on one client still sees a file that another
client replaced as it was; on the volume of test_multihost (the option off) it sees the new
file. Two clients in two network namespaces (tests/support/cluster.py), one volume each way.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest

from cgirt.runner import freshness
from tests.support.cluster import GlusterServer, Lan
from tests.support.servers import IS_ROOT


@pytest.fixture
def gluster(tmp_path: Path) -> Iterator[tuple[GlusterServer, Path]]:
    if not IS_ROOT:
        message = "*** network namespaces and FUSE mounts need root (./run-tests as root) ***"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    lan = Lan(f"g{os.getpid() % 1000}", ["a", "b"])
    try:
        server = GlusterServer(lan, tmp_path / "files", tmp_path / "export")
        server.add_volume("shipped", {})  # gluster's defaults: md-cache on
        yield server, tmp_path
    finally:
        lan.close()
    assert not [m for m in tmp_path.iterdir() if os.path.ismount(m)]
    names = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"cgirt-{lan.tag}-" not in names


def stale_forced_stats(written_dir: Path, seen_dir: Path, rounds: int = 10) -> int:
    """Replace a file through one client (by rename, as the gateway publishes), then count
    the forced stats of it through the other that do not show the new file."""
    written, seen = written_dir / "probe.txt", seen_dir / "probe.txt"
    written.write_text("0")
    stale = 0
    for i in range(1, rounds + 1):
        os.stat(seen)  # the other client looked at it: its attributes are cached
        tmp = written.with_name("probe.tmp")
        tmp.write_text("x" * i)
        os.replace(tmp, written)
        stale += freshness.forced_stat(str(seen)).st_size != i
    return stale


def test_md_cache_hides_a_publish_from_the_forced_stat(
        gluster: tuple[GlusterServer, Path]) -> None:
    server, tmp = gluster
    required = {m: server.mount(m, tmp / f"mnt-{m}") for m in ("a", "b")}
    shipped = {m: server.mount(m, tmp / f"shipped-{m}", volume="shipped") for m in ("a", "b")}
    assert stale_forced_stats(required["a"], required["b"]) == 0
    assert stale_forced_stats(shipped["a"], shipped["b"]) > 0, \
        "md-cache did not hide the new file: INSTALL.md's reason for the option is gone"
