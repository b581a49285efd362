"""Which local paths a visitor of the dashboard may use: all of them on one's own machine, only allowed folders when
the dashboard is served to others.

Served to others (listening on an address other than a loopback one, or FWSVD_SERVE=1), every path a visitor types
(a model folder, a GLUE folder, a folder to save to) must lie under a root: FWSVD_ALLOWED_DIRS (folders separated
by os.pathsep), else only the tool's exports folder in its cache. FWSVD_DATA_DIR and FWSVD_DEFAULT_MODEL, the
operator's own settings, may always be read. The check comes before any look at the file system, and its refusal
is the same sentence whatever is there, so that a visitor learns nothing about the server's files.
"""
from __future__ import annotations

import ipaddress
import os
import re
from pathlib import Path

from fwsvd_core.cache import cache_root
from fwsvd_core.errors import OutsideAllowedFolders

SERVE_ENV = "FWSVD_SERVE"
ALLOWED_ENV = "FWSVD_ALLOWED_DIRS"
DATA_ENV = "FWSVD_DATA_DIR"
MODEL_ENV = "FWSVD_DEFAULT_MODEL"
LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}
# an organisation/name hub id, nothing that reads as a path
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*(/[A-Za-z0-9][A-Za-z0-9_.-]*)?$")


def is_loopback(address: str | None) -> bool:
    """Whether a server listening on `address` is reachable from this machine only (empty: every interface)."""
    if not address:
        return False
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return address.lower() in LOOPBACK_NAMES


def served_to_others(server_address: str | None) -> bool:
    """Whether visitors other than this machine's user can reach the dashboard: FWSVD_SERVE=1, or a server address
    that is not a loopback one."""
    return os.environ.get(SERVE_ENV, "").strip() == "1" or not is_loopback(server_address)


def exports_folder() -> Path:
    """Where visitors may save compressed models when no FWSVD_ALLOWED_DIRS is set."""
    return cache_root() / "exports"


def allowed_roots() -> list[Path]:
    """The folders under which a visitor may read and write: FWSVD_ALLOWED_DIRS, else the tool's exports folder."""
    value = os.environ.get(ALLOWED_ENV, "")
    named = [part.strip() for part in value.split(os.pathsep) if part.strip()]
    return [Path(p).expanduser().resolve() for p in named] or [exports_folder().resolve()]


def readable_roots() -> list[Path]:
    """The allowed roots and the operator's data folder (FWSVD_DATA_DIR)."""
    data = os.environ.get(DATA_ENV, "").strip()
    return allowed_roots() + ([Path(data).expanduser().resolve()] if data else [])


def refusal(roots: list[Path]) -> OutsideAllowedFolders:
    """The one message for any path outside the roots: it names the roots, never what the path is or holds."""
    where = ", ".join(str(r) for r in roots)
    return OutsideAllowedFolders(
        f"This dashboard is served to others, so it reads and writes only under: {where}. Choose a path there "
        f"(the server's operator sets these folders with {ALLOWED_ENV}).")


def _inside(path: str | Path, roots: list[Path]) -> Path:
    # resolve() follows symlinks and removes `..` without requiring the path to exist: no probe decides the answer
    resolved = Path(path).expanduser().resolve()
    if any(resolved == root or resolved.is_relative_to(root) for root in roots):
        return resolved
    raise refusal(roots)


def readable_path(path: str | Path) -> Path:
    """`path` resolved, when a visitor may read it; else OutsideAllowedFolders."""
    return _inside(path, readable_roots())


def writable_path(path: str | Path) -> Path:
    """`path` resolved, when a visitor may write there; else OutsideAllowedFolders."""
    return _inside(path, allowed_roots())


def looks_like_hub_id(source: str) -> bool:
    """An organisation/name string with nothing in it that reads as a path."""
    return bool(HUB_ID.match(source)) and ".." not in source


def check_model_source(source: str) -> None:
    """Refuse (OutsideAllowedFolders) a model source a visitor may not use: a demo, the operator's default model
    and a hub id pass; a path must lie under the readable roots. A hub-id-looking name that names an existing
    folder relative to the server's working folder is a path too (the loader would read it)."""
    if source.startswith("demo:") or source == os.environ.get(MODEL_ENV):
        return
    if looks_like_hub_id(source) and not Path(source).exists():
        return
    readable_path(source)
