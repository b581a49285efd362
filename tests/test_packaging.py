"""The project installs as a package with its console script (no network: dependencies are not resolved here)."""
import os
import shutil
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow


def test_pip_install_gives_a_working_fwsvd_command(tmp_path):
    source = tmp_path / "src"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "artifacts", "results", "__pycache__",
                                                               "build", "*.egg-info", ".mypy_cache",
                                                               ".ruff_cache"))
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--target",
                    str(target), str(source)], check=True, capture_output=True)
    installed = {p.relative_to(target).as_posix() for p in (target / "fwsvd_core").rglob("*.py")}
    assert installed == {p.relative_to(REPO).as_posix() for p in (REPO / "fwsvd_core").rglob("*.py")}  # subpackages too
    env = {**os.environ, "PYTHONPATH": str(target)}
    done = subprocess.run([str(target / "bin" / "fwsvd"), "--help"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, check=True)
    assert "sweep" in done.stdout and "exit codes" in done.stdout
    version = subprocess.run([str(target / "bin" / "fwsvd"), "--version"], capture_output=True, text=True, env=env,
                             cwd=tmp_path, check=True)
    assert version.stdout.startswith("fwsvd-studio ")
