"""The project installs as a package: the library, the `fwsvd` command and the dashboard (`fwsvd-studio`), from a wheel
into a fresh virtual environment, used from another folder; its dependencies are requirements.txt's. No network: the
environment sees this machine's packages and the wheel is installed without dependencies."""
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib
from conftest import REPO
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

PAGES = sorted(p.name for p in (REPO / "pages").glob("*.py"))


def specifiers(lines: list[str]) -> dict[str, str]:
    """Each requirement's canonical name -> its version specifier."""
    return {canonicalize_name(r.name): str(r.specifier) for r in map(Requirement, lines)}


def test_the_package_declares_the_versions_of_requirements_txt():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dependencies = specifiers(project["dependencies"])
    extras = specifiers([r for extra in project["optional-dependencies"].values() for r in extra])
    lines = [line.split("#")[0].strip() for line in (REPO / "requirements.txt").read_text().splitlines()]
    required = specifiers([line for line in lines if line])
    assert dependencies["torch"] == required["torch"] == "==2.13.0"
    assert set(dependencies) <= set(required)  # what the package pulls is what requirements.txt installs
    for name, spec in required.items():  # and each, in the dependencies or an extra, at requirements.txt's version
        assert dependencies.get(name, extras.get(name)) == spec, name


def test_fwsvd_studio_passes_the_dashboards_settings_and_a_flag_given_wins():
    from studio.launch import streamlit_args

    args = streamlit_args(["--server.address", "0.0.0.0", "--theme.base=dark"])
    assert args[:2] == ["run", str(REPO / "app.py")]  # in a checkout: its own app.py
    assert "--browser.gatherUsageStats=false" in args and "--client.toolbarMode=minimal" in args
    assert not any(a.startswith(("--server.address=", "--theme.base=")) for a in args[:-3])  # the user's, last, instead
    assert args[-3:] == ["--server.address", "0.0.0.0", "--theme.base=dark"]
    assert "--server.address=localhost" in streamlit_args([])


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> SimpleNamespace:
    """A wheel built from a copy of the checkout, installed into a fresh virtual environment."""
    tmp = tmp_path_factory.mktemp("packaging")
    source = tmp / "src"  # a copy, so that the build leaves nothing in the checkout
    shutil.copytree(REPO, source, ignore=shutil.ignore_patterns(".git", "artifacts", "results", "__pycache__",
                                                               "build", "dist", "*.egg-info", ".mypy_cache",
                                                               ".ruff_cache", ".pytest_cache", ".benchmarks"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                    str(tmp / "dist"), str(source)], check=True, capture_output=True, timeout=300)
    wheel = next((tmp / "dist").glob("fwsvd_studio-*.whl"))
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)], check=True,
                   timeout=120)
    # the environment's python runs this machine's pip (a system site package) and installs into the environment
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, timeout=300)
    elsewhere = tmp / "elsewhere"  # the folder a user runs the commands from: not the checkout
    elsewhere.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    site = subprocess.run([str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                          capture_output=True, text=True, check=True, env=env).stdout.strip()
    return SimpleNamespace(wheel=wheel, bin=venv / "bin", site=Path(site), cwd=elsewhere, env=env)


@pytest.mark.slow
def test_the_wheel_carries_the_library_and_the_dashboard(installed):
    names = zipfile.ZipFile(installed.wheel).namelist()
    assert {n.split("/")[0] for n in names if ".dist-info/" not in n} == {"fwsvd_core", "studio"}  # no top-level app, pages
    library = {n for n in names if n.startswith("fwsvd_core/")}
    assert library == {p.relative_to(REPO).as_posix() for p in (REPO / "fwsvd_core").rglob("*.py")}  # subpackages too
    dashboard = {n.removeprefix("studio/dashboard/") for n in names if n.startswith("studio/dashboard/")}
    assert dashboard == {"app.py", ".streamlit/config.toml", *(f"pages/{p}" for p in PAGES)}
    assert (installed.site / "studio" / "dashboard" / "app.py").read_text() == (REPO / "app.py").read_text()


@pytest.mark.slow
def test_pip_install_gives_a_working_fwsvd_command(installed):
    done = subprocess.run([str(installed.bin / "fwsvd"), "--help"], capture_output=True, text=True, env=installed.env,
                          cwd=installed.cwd, check=True, timeout=120)
    assert "sweep" in done.stdout and "exit codes" in done.stdout
    version = subprocess.run([str(installed.bin / "fwsvd"), "--version"], capture_output=True, text=True,
                             env=installed.env, cwd=installed.cwd, check=True, timeout=120)
    assert version.stdout.startswith("fwsvd-studio ")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port: int) -> str:
    """What the dashboard's health endpoint answers, or '' while nothing listens."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as answer:
            return answer.read().decode()
    except OSError:
        return ""


@pytest.mark.slow
def test_fwsvd_studio_starts_the_installed_dashboard_from_any_folder(installed):
    port = free_port()
    log = installed.cwd / "studio.log"
    with log.open("w") as out:
        server = subprocess.Popen([str(installed.bin / "fwsvd-studio"), "--server.port", str(port), "--server.headless",
                                   "true"], cwd=installed.cwd, env=installed.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while (answer := health(port)) != "ok" and server.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert answer == "ok", log.read_text()
        # the dashboard's own settings (installed .streamlit/config.toml): this machine only, though run elsewhere
        assert f"URL: http://localhost:{port}" in log.read_text() and "Network URL" not in log.read_text()
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    assert health(port) == ""


RUN_PAGES = """
import json, studio
from streamlit.testing.v1 import AppTest
from studio.launch import dashboard_dir
app = dashboard_dir() / "app.py"
at = AppTest.from_file(str(app), default_timeout=120).run()
shown = {}
for page in sorted((app.parent / "pages").glob("*.py")):
    at.switch_page(str(page.relative_to(app.parent))).run()
    shown[page.name] = {"exceptions": [e.value for e in at.exception], "errors": [e.value for e in at.error],
                        "titles": [t.value for t in at.title]}
print(json.dumps({"studio": studio.__file__, "app": str(app), "pages": shown}))
"""


@pytest.mark.slow
def test_the_installed_dashboard_runs_every_page(installed):
    # an unknown model: each page runs its own code up to the model's message, and nothing is loaded or built
    env = {**installed.env, "FWSVD_DEFAULT_MODEL": "someone/not-a-model"}
    done = subprocess.run([str(installed.bin / "python"), "-c", RUN_PAGES], capture_output=True, text=True, env=env,
                          cwd=installed.cwd, check=True, timeout=300)
    shown = json.loads(done.stdout.splitlines()[-1])
    assert Path(shown["studio"]).is_relative_to(installed.site) and Path(shown["app"]).is_relative_to(installed.site)
    assert sorted(shown["pages"]) == PAGES
    for page, seen in shown["pages"].items():
        assert not seen["exceptions"] and len(seen["titles"]) == 1, (page, seen)
        assert any("someone/not-a-model" in e for e in seen["errors"]), (page, seen)
