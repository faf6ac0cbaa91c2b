"""A real install carries the whole program: the wheel built from this tree holds every module.

An editable install (what ./run-tests and ./run-demo use) maps the source tree, so a package
missing from the build configuration goes unnoticed everywhere but in `pip install /path/to/cgirt`
(INSTALL.md's way), where `cgirt host` failed with an ImportError.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_wheel_holds_every_module_and_the_skeleton_site(tmp_path: Path) -> None:
    # Built from a copy: pip builds in the source tree, and a build/ left there from an earlier
    # build would both litter the checkout and hide a package the configuration leaves out.
    source = tmp_path / "source"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv*", "build", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"))
    # No build isolation: the test venv's setuptools builds it, no package index needed.
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-q", "-w", str(tmp_path), str(source)],
                   check=True, capture_output=True, cwd=tmp_path)
    wheel, = tmp_path.glob("cgirt-*.whl")
    inside = set(zipfile.ZipFile(wheel).namelist())
    wanted = {p.relative_to(ROOT).as_posix()
              for package in ("cgirt", "ftp_gateway") for p in (ROOT / package).rglob("*.py")}
    wanted |= {p.relative_to(ROOT).as_posix() for p in (ROOT / "skeleton_site").rglob("*")
               if p.is_file()}
    assert "cgirt/host/master.py" in wanted
    missing = sorted(wanted - inside)
    assert not missing, f"a wheel of this tree lacks {missing}"
