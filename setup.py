"""Ships the dashboard inside the installed `studio` package; everything else is declared in pyproject.toml.

app.py, pages/ and .streamlit/config.toml stay at the repository's root, so that `streamlit run app.py` works in a
checkout; a wheel carries them as studio/dashboard/, where `fwsvd-studio` (studio/launch.py) finds them. Installed
under their own names they would be top-level modules `app` and `pages`, which other distributions may also ship.
"""
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
DASHBOARD = ("app.py", "pages/*.py", ".streamlit/config.toml")  # MANIFEST.in puts the same files in the sdist


class BuildPyWithDashboard(build_py):
    """build_py, plus the dashboard's files copied to studio/dashboard/ in the build folder."""

    def dashboard_files(self) -> dict[str, str]:
        """Each dashboard file's place in the build folder -> its source."""
        target = Path(self.build_lib, "studio", "dashboard")
        return {str(target / p.relative_to(ROOT)): str(p) for pattern in DASHBOARD for p in sorted(ROOT.glob(pattern))}

    def run(self) -> None:
        super().run()
        if self.editable_mode:  # an editable install runs the checkout's own files
            return
        for built, source in self.dashboard_files().items():
            self.mkpath(str(Path(built).parent))
            self.copy_file(source, built)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        return outputs if self.editable_mode else [*outputs, *self.dashboard_files()]


setup(cmdclass={"build_py": BuildPyWithDashboard})
