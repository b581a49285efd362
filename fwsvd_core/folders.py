"""Writing whole folders safely: the tool replaces only folders it wrote, and a kill leaves the old or the new one.

A folder is written in a hidden staging folder beside its destination, with a manifest of every file in
it. Replacing an earlier folder swaps the two in one atomic exchange where the system has one (Linux),
so the destination always holds a complete folder; elsewhere it renames the old one aside, renames the
new one in, then deletes the one aside, and a later run puts an aside folder back when a kill came
between the two renames. Hidden staging and aside folders of dead processes are removed by a later run:
their names, with the writer's process id, are made only here. A new folder gets the permissions the umask
gives; a folder that is replaced keeps its own.

Sets of result files (a sweep's CSV and JSON) are written the same way, file by file: every file goes to a
hidden temporary file beside its destination first, so a full disk fails before anything is replaced, then
all are renamed in together with Ctrl-C and termination held back. The JSON of the set names every file of
it: that marker is how a later run knows which files it may replace.
"""
from __future__ import annotations

import ctypes
import errno
import json
import os
import re
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from fwsvd_core.errors import ExportError

# where huggingface_hub keeps its own bookkeeping of a local folder, which its uploads leave out by default (any other
# `.cache/` path makes an upload fail): a user who uploads an export folder does not publish the tool's by accident
MANIFEST_FILE = ".cache/huggingface/fwsvd_studio_manifest.json"
LEGACY_MANIFEST_FILE = "fwsvd_manifest.json"  # where folders written by earlier versions keep it
_STAGING, _ASIDE, _TEMP = "fwsvd-staging", "fwsvd-old", "fwsvd-tmp"
RESULT_MARKER = "written by"  # the key of a result set's JSON naming the files this tool wrote
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
        manifest = json.loads(next((directory / name for name in (MANIFEST_FILE, LEGACY_MANIFEST_FILE)
                                    if (directory / name).is_file()), directory / MANIFEST_FILE).read_text())
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
    return listed is not None and not folder_files(directory) - listed - {MANIFEST_FILE, LEGACY_MANIFEST_FILE}


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
    (staging / MANIFEST_FILE).parent.mkdir(parents=True, exist_ok=True)
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
        # mkdtemp makes 0700 folders: the result gets what mkdir would give it, or the mode of the folder it replaces
        os.chmod(staging, _mode_of(directory) if directory.is_dir() else 0o777 & ~current_umask())
        yield staging
        _write_manifest(staging, kind)
        _files_follow_umask(staging)
        _swap_in(staging, directory, may_replace)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def current_umask() -> int:
    """The process's umask (read from /proc where it can be, so no other thread sees it changed)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _files_follow_umask(folder: Path) -> None:
    """Give each file under `folder` the mode open() would (some writers, safetensors' among them, make 0600 files)."""
    mask = current_umask()
    for path in folder.rglob("*"):
        if path.is_file() and not path.is_symlink():
            os.chmod(path, (0o666 | (path.stat().st_mode & 0o111)) & ~mask)


def _mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o7777


# ---- sets of result files ------------------------------------------------------------------------------------


def result_paths(out: str | Path, default_name: str, suffixes: tuple[str, ...]) -> dict[str, Path]:
    """The file for each suffix that an `--out` names: the suffix appended to `out` (dots in the name kept); a
    folder (an existing one, or a path ending in a separator) receives them under `default_name`. A suffix that
    `out` already ends with (sweep.csv) is not doubled."""
    text = str(out)
    base = Path(out)
    if text.endswith(("/", os.sep)) or base.is_dir():
        base = base / default_name
    elif base.suffix.lower() in suffixes:
        base = base.with_suffix("")
    return {suffix: base.with_name(base.name + suffix) for suffix in suffixes}


def result_marker(paths: Mapping[str, Path], kind: str) -> dict:
    """What a result set's JSON holds under RESULT_MARKER: the tool, the kind of result, the names of its files."""
    return {"tool": "fwsvd-studio", "kind": kind, "files": sorted(p.name for p in paths.values())}


def _marked_files(json_path: Path) -> set[str]:
    """The file names the tool's marker in `json_path` lists; empty when the file is not one the tool wrote."""
    try:
        content = json.loads(json_path.read_text())
    except (OSError, ValueError):
        return set()
    marker = content.get(RESULT_MARKER) if isinstance(content, dict) else None
    if not isinstance(marker, dict) or marker.get("tool") != "fwsvd-studio" or not isinstance(marker.get("files"), list):
        return set()
    return {f for f in marker["files"] if isinstance(f, str)}


def check_result_targets(paths: Mapping[str, Path], json_suffix: str = ".json") -> None:
    """Raise ExportError unless every file of `paths` is new or one this tool wrote as part of this same set."""
    ours = _marked_files(paths[json_suffix]) if paths[json_suffix].is_file() else set()
    for path in paths.values():
        if path.is_dir():
            raise ExportError(f"{path} is a folder, not a file this tool can write. Choose another --out.")
        if path.exists() and path.name not in ours:
            raise ExportError(f"{path} exists and was not written by this tool (results of earlier versions were not "
                              f"marked as the tool's), so it is left alone. Move or delete it, or choose another "
                              f"--out (a folder given as --out receives files with default names).")


def _clean_temp_files(path: Path) -> None:
    """Remove the temporary files that killed writes of `path` left beside it."""
    pattern = _sibling_pattern(path, _TEMP)
    for temp in path.parent.glob(f".{path.name}.{_TEMP}-*"):
        match = pattern.match(temp.name)
        if match and not _pid_alive(int(match.group(1))):
            temp.unlink(missing_ok=True)


def write_file(path: Path, data: bytes) -> None:
    """Write `data` to `path` and flush it to the disk (a full disk fails here, not later)."""
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


@contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and termination wait until the block is done (only the main thread can hold them)."""
    held = {signal.SIGINT, signal.SIGTERM}
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def write_result_files(contents: Mapping[Path, str | bytes], json_path: Path) -> None:
    """Write a set of result files together: all to temporary files, then all renamed in; nothing replaced on a failure.

    Only files that are new or that this tool wrote (as `json_path`'s marker says) are replaced: check that
    with `check_result_targets` before the work, and it is checked again here.
    """
    ours = _marked_files(json_path) if json_path.is_file() else set()
    for path in contents:
        if path.exists() and path.name not in ours:
            raise ExportError(f"{path} appeared while the results were computed and was not written by this tool; "
                              f"it is left alone and nothing was written. Choose another --out.")
    temps: dict[Path, Path] = {}
    try:
        for path, data in contents.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            _clean_temp_files(path)
            fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{_TEMP}-{os.getpid()}-")
            os.close(fd)
            temps[path] = Path(name)
            # mkstemp makes 0600 files: give the result the mode of the file it replaces, or what open() would give
            os.chmod(name, _mode_of(path) if path.is_file() else 0o666 & ~current_umask())
            try:
                write_file(Path(name), data.encode() if isinstance(data, str) else data)
            except OSError as exc:
                raise ExportError(f"Could not write {path}: {exc.strerror or exc}. The earlier files were kept "
                                  f"as they were; nothing was written.") from None
        with _signals_held():
            # the JSON, which says the set is the tool's, goes in last
            for path, temp in sorted(temps.items(), key=lambda item: item[0] == json_path):
                os.replace(temp, path)
    finally:
        for temp in temps.values():
            temp.unlink(missing_ok=True)
