"""The library stays clean under the project's ruff and mypy settings (pyproject.toml)."""
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("tool", [["ruff", "check", "fwsvd_core"], ["mypy"]], ids=["ruff", "mypy"])
def test_the_library_is_clean(tool):
    done = subprocess.run([sys.executable, "-m", *tool], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
