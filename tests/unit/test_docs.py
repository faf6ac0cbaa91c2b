"""The configurations shown in the docs are the files the integration tests start."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_readme_nginx_block_is_the_tested_file() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", readme, re.S)
    assert blocks == [(REPO / "deploy" / "nginx-cgirt.conf").read_text()]
