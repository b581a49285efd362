"""Writing whole folders safely: the tool replaces only folders it wrote, and a kill leaves the old or the new one.

A folder is written in a hidden staging folder beside its destination, with a manifest of every file in
it. Replacing an earlier folder swaps the two in one atomic exchange where the system has one (Linux),
so the destination always holds a complete folder; elsewhere it renames the old one aside, renames the
new one in, then deletes the one aside, and a later run puts an aside folder back when a kill came
between the two renames. Hidden staging and aside folders of dead processes are removed by a later run:
their names, with the writer's process id, are made only here.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fwsvd_core.errors import ExportError

MANIFEST_FILE = "fwsvd_manifest.json"
_STAGING, _ASIDE = "fwsvd-staging", "fwsvd-old"
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _sibling_pattern(directory: Path, kind: str) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(directory.name)}\.{kind}-(\d+)-[^/]+$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def listed_files(directory: Path, kind: str | None = None) -> set[str] | None:
    """The files the manifest of `directory` says the tool wrote; None without a readable manifest (of `kind`)."""
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict) or (kind is not None and manifest.get("kind") != kind):
        return None
    files = manifest.get("files")
    return set(files) if isinstance(files, list) and all(isinstance(f, str) for f in files) else None


def folder_files(directory: Path) -> set[str]:
    """Every file under `directory`, as paths relative to it."""
    return {p.relative_to(directory).as_posix() for p in directory.rglob("*") if not p.is_dir()}


def written_by_tool(directory: Path, kind: str | None = None) -> bool:
    """True when `directory` has a manifest (of `kind`, if given) and holds nothing the manifest does not list."""
    listed = listed_files(directory, kind)
    return listed is not None and not folder_files(directory) - listed - {MANIFEST_FILE}


def _restore_or_drop_aside(directory: Path) -> None:
    for aside in directory.parent.glob(f".{directory.name}.{_ASIDE}-*"):
        match = _sibling_pattern(directory, _ASIDE).match(aside.name)
        if not match or _pid_alive(int(match.group(1))) or not aside.is_dir():
            continue
        if not directory.exists():
            os.replace(aside, directory)  # killed between the two renames: the old folder goes back
        else:
            shutil.rmtree(aside)  # killed after the new folder went in: the old one was being replaced


def clean_leftovers(directory: Path) -> list[str]:
    """Undo what killed writes of `directory` left beside it; returns what was done, one line each."""
    directory = Path(directory)
    if not directory.parent.is_dir():
        return []
    done = []
    for staging in directory.parent.glob(f".{directory.name}.{_STAGING}-*"):
        match = _sibling_pattern(directory, _STAGING).match(staging.name)
        if match and not _pid_alive(int(match.group(1))):
            shutil.rmtree(staging, ignore_errors=True)
            done.append(f"removed the unfinished folder {staging.name} of an interrupted run")
    existed = directory.exists()
    _restore_or_drop_aside(directory)
    if not existed and directory.exists():
        done.append(f"put back {directory.name}, which an interrupted replacement had moved aside")
    return done


def probe_writable(folder: Path) -> None:
    """Create `folder` if needed and write and remove a file in it; OSError when that cannot be done."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=folder, prefix=".fwsvd-probe-")
    os.close(fd)
    os.unlink(probe)


def check_writable(directory: Path) -> None:
    """Raise ExportError now, before any heavy work, when `directory` cannot be created or written."""
    directory = Path(directory)
    try:
        probe_writable(directory.parent)
    except OSError as exc:
        raise ExportError(f"Cannot write to {directory}: {exc.strerror or exc}. Choose a folder you can write to.") from None


def _write_manifest(staging: Path, kind: str) -> None:
    files = sorted(folder_files(staging) - {MANIFEST_FILE})
    (staging / MANIFEST_FILE).write_text(json.dumps({"tool": "fwsvd-studio", "kind": kind, "files": files}, indent=1))


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2); False where the system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False  # a file system without the exchange: the caller renames in two steps
    raise OSError(code, os.strerror(code), str(b))


def _swap_in(staging: Path, directory: Path, may_replace) -> None:
    """Put the finished staging folder at `directory`; an earlier folder is deleted only once the new one is in."""
    if not directory.exists():
        os.replace(staging, directory)
        return
    if directory.is_dir() and not any(directory.iterdir()):
        os.replace(staging, directory)  # an empty folder is replaced in one rename
        return
    if not may_replace(directory):
        raise ExportError(f"{directory} changed while it was being written and is no longer ours to replace; "
                          f"the new folder was not put in its place.")
    if exchange_paths(staging, directory):
        shutil.rmtree(staging)  # the staging name now holds the old folder
        return
    aside = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.{_ASIDE}-{os.getpid()}-"))
    os.replace(directory, aside)
    try:
        os.replace(staging, directory)
    except BaseException:
        os.replace(aside, directory)
        raise
    shutil.rmtree(aside)


@contextmanager
def staged_directory(directory: str | Path, kind: str, may_replace=None) -> Iterator[Path]:
    """A hidden folder beside `directory` to write into; when the block completes it replaces `directory`.

    `may_replace(existing)` decides whether an existing, non-empty `directory` may go (default: only a folder
    this tool wrote, of the same kind). An exception inside the block removes the staging folder and leaves
    `directory` as it was.
    """
    directory = Path(directory)
    may_replace = may_replace or (lambda d: written_by_tool(d, kind))
    directory.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(directory)
    staging = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}.{_STAGING}-{os.getpid()}-"))
    try:
        yield staging
        _write_manifest(staging, kind)
        _swap_in(staging, directory, may_replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
