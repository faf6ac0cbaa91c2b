"""The script cache: stat signatures compared with !=, and the racy-rewrite content check."""

from __future__ import annotations

import os
from pathlib import Path

from cgirt.runner.cache import ScriptCache, signature


def run(code: object) -> str:
    namespace: dict[str, object] = {}
    exec(code, namespace)  # type: ignore[arg-type]
    return str(namespace["VALUE"])


def test_rewrite_in_the_same_timestamp_tick_is_seen(tmp_path: Path) -> None:
    """A coarse kernel clock can leave size, mtime and ctime all equal after a rewrite."""
    script = tmp_path / "s.py"
    script.write_text("VALUE = 'one'\n")
    cache = ScriptCache()
    assert run(cache.get(str(script))) == "one"
    with open(script, "r+") as f:
        f.write("VALUE = 'two'\n")
    # What a coarse clock produces: the entry's signature equals the file's new signature.
    cache._entries[str(script)].sig = signature(os.stat(script))
    assert run(cache.get(str(script))) == "two"


def test_an_older_mtime_is_a_change(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("VALUE = 'one'\n")
    cache = ScriptCache()
    assert run(cache.get(str(script))) == "one"
    script.write_text("VALUE = 'two'\n")
    os.utime(script, (0, 0))
    assert run(cache.get(str(script))) == "two"


def test_unchanged_file_is_not_recompiled(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text("VALUE = 'one'\n")
    os.utime(script, (1_000_000, 1_000_000))
    cache = ScriptCache()
    first = cache.get(str(script))
    assert cache.get(str(script)) is first
