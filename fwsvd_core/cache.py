"""An on-disk cache of tensors: safetensors files written atomically, corrupt entries detected."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path

import torch
from platformdirs import user_cache_dir
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fwsvd_core.folders import probe_writable

CACHE_ENV = "FWSVD_CACHE_DIR"
log = logging.getLogger("fwsvd_core")


def cache_root() -> Path:
    """FWSVD_CACHE_DIR, else the platform's user cache folder (~/.cache/fwsvd_studio on Linux, or $XDG_CACHE_HOME)."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else Path(user_cache_dir("fwsvd_studio", appauthor=False))


def cache_key(**parts) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write to a temporary file in the same folder, then rename: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        tagged = {**(metadata or {}), "complete": "1"}
        save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, tmp, metadata=tagged)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def store_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> str:
    """`save_tensors` for a cache: a failed write is not fatal. Returns '' or a warning for the user."""
    try:
        save_tensors(path, tensors, metadata)
    except OSError as exc:
        return _write_failed(path, exc)
    return ""


def store_bytes(path: Path, data: bytes) -> str:
    """`atomic_write_bytes` for a cache: a failed write is not fatal. Returns '' or a warning for the user."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        return _write_failed(path, exc)
    return ""


def _write_failed(path: Path, exc: OSError) -> str:
    warning = (f"the cache folder {path.parent} cannot be written ({exc.strerror or exc}): the result is kept "
               f"in memory only (set {CACHE_ENV} to a writable folder)")
    log.warning(warning)
    return warning


def cache_writable() -> bool:
    """Whether the cache folder can be created and written (checked before heavy work)."""
    try:
        probe_writable(cache_root())
    except OSError:
        return False
    return True


def safetensors_readable(path: Path) -> bool:
    """Whether a safetensors file is whole: its header reads and its data covers every tensor."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt"):
            return True
    except (SafetensorError, OSError):
        return False


Check = Callable[[dict[str, torch.Tensor]], str]


def expect_shapes(shapes: Mapping[str, tuple[int, ...]]) -> Check:
    """A check that the entry holds exactly these tensors with these shapes."""
    def check(tensors: dict[str, torch.Tensor]) -> str:
        if missing := sorted(set(shapes) - set(tensors)):
            return f"missing {missing[:3]}"
        if extra := sorted(set(tensors) - set(shapes)):
            return f"unexpected {extra[:3]}"
        wrong = [k for k, shape in shapes.items() if tuple(tensors[k].shape) != tuple(shape)]
        return f"wrong shape for {wrong[:3]}" if wrong else ""
    return check


def load_tensors(path: Path, check: Check | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]] | None:
    """The tensors and metadata of a cache entry; None (and the entry removed) when missing or corrupt.

    Corrupt: unreadable, unfinished, holding NaN or infinity, or failing `check` (which returns a reason).
    """
    if not path.is_file():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as fh:
            metadata = dict(fh.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError):
        _discard(path, "unreadable")
        return None
    if metadata.get("complete") != "1":
        _discard(path, "unfinished")
        return None
    if bad := [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]:
        _discard(path, f"NaN or infinity in {bad[:3]}")
        return None
    if check is not None and (reason := check(tensors)):
        _discard(path, reason)
        return None
    return tensors, metadata


def _discard(path: Path, reason: str) -> None:
    """Remove a damaged cache entry (a file the cache wrote), so that it is computed again."""
    log.warning("cache entry %s is damaged (%s): computing it again", path.name, reason)
    path.unlink(missing_ok=True)
