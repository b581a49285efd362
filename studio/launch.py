"""`fwsvd-studio`: the dashboard started from the installed package, from any folder, with its own settings.

Streamlit reads `.streamlit/config.toml` from the current folder (and, in recent releases only, beside the script), so
the dashboard's settings (this machine only, no usage statistics, its theme and toolbar) are passed as flags; a flag
given on the command line wins, e.g. `fwsvd-studio --server.port 8600`.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the Streamlit releases for it require the toml package
    import toml as tomllib  # type: ignore[no-redef]

HERE = Path(__file__).resolve().parent


def dashboard_dir() -> Path:
    """The folder holding app.py, pages/ and .streamlit/config.toml: the installed copy, else this checkout's root."""
    # an installed wheel carries them as studio/dashboard/ (setup.py); a checkout or editable install has them at the root
    for folder in (HERE / "dashboard", HERE.parent):
        if (folder / "app.py").is_file() and (folder / ".streamlit" / "config.toml").is_file():
            return folder
    raise SystemExit(f"fwsvd-studio: the dashboard's files (app.py, .streamlit/config.toml) are not in {HERE / 'dashboard'}; "
                     "reinstall the package.")


def settings_flags(config_file: Path, given: list[str]) -> list[str]:
    """The config file's settings as `--section.option=value` flags, leaving out those named in `given`."""
    settings: dict[str, Any] = tomllib.loads(config_file.read_text(encoding="utf-8"))
    named = {arg.split("=", 1)[0] for arg in given if arg.startswith("--")}
    flags = []
    for section, options in settings.items():
        for option, value in options.items():
            flag = f"--{section}.{option}"
            if flag not in named:
                flags.append(f"{flag}={str(value).lower() if isinstance(value, bool) else value}")
    return flags


def streamlit_args(argv: list[str]) -> list[str]:
    """The arguments of `streamlit` that run the dashboard with its settings and the user's own flags `argv`."""
    folder = dashboard_dir()
    return ["run", str(folder / "app.py"), *settings_flags(folder / ".streamlit" / "config.toml", argv), *argv]


def main(argv: list[str] | None = None) -> None:
    """Start the dashboard (Streamlit's own command line, in this process, so Ctrl-C stops it)."""
    from streamlit.web import cli

    cli.main(args=streamlit_args(sys.argv[1:] if argv is None else argv), prog_name="fwsvd-studio")


if __name__ == "__main__":
    main()
