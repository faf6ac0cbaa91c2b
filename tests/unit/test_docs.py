"""The configurations shown in the docs are the files the integration tests start."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_readme_nginx_block_is_the_tested_file() -> None:
    readme = (REPO / "README.md").read_text()
    blocks = re.findall(r"```nginx\n(.*?)```", readme, re.S)
    assert blocks == [(REPO / "deploy" / "nginx-cgirt.conf").read_text()]


def test_install_blocks_are_the_tested_files() -> None:
    install = (REPO / "INSTALL.md").read_text()
    blocks = re.findall(r"<!-- file: (deploy/\S+) -->\n```\w*\n(.*?)```", install, re.S)
    assert len(blocks) >= 7
    for name, text in blocks:
        assert text == (REPO / name).read_text(), name
    shown = {name for name, _ in blocks}
    for path in (REPO / "deploy").iterdir():
        assert f"deploy/{path.name}" in shown, f"{path.name} is tested but not in INSTALL.md"
