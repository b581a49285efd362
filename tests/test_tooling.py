"""The project stays clean under its ruff settings (library, app, benchmarks, tests) and the library under mypy."""
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("tool", [["ruff", "check", "."], ["mypy"]], ids=["ruff", "mypy"])
def test_the_project_is_clean(tool):
    done = subprocess.run([sys.executable, "-m", *tool], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]


def test_the_readmes_commands_write_only_into_folders_git_ignores():
    """Issue 23, 20: running README's examples from the repository leaves no untracked folder behind."""
    import re

    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), re.S)  # the commands to copy
    outputs = [o for block in blocks for o in re.findall(r"--(?:output-dir|out|save)[ =](\S+)", block)]
    assert outputs
    checked = subprocess.run(["git", "check-ignore", "--no-index", *outputs], cwd=REPO, capture_output=True, text=True)
    assert sorted(checked.stdout.split()) == sorted(outputs), f"not ignored: {set(outputs) - set(checked.stdout.split())}"
