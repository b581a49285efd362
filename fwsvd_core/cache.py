"""An on-disk cache of tensors: safetensors files written atomically, corrupt entries detected."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist
from filelock import FileLock, Timeout
from platformdirs import user_cache_dir
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fwsvd_core.errors import Cancelled, FwsvdError
from fwsvd_core.folders import probe_writable

CACHE_ENV = "FWSVD_CACHE_DIR"
# the longest wait for another process's computation of an entry; past it this process computes the entry too
LOCK_WAIT_SECONDS = 3 * 3600.0
log = logging.getLogger("fwsvd_core")


def cache_root() -> Path:
    """FWSVD_CACHE_DIR, else the platform's user cache folder (~/.cache/fwsvd_studio on Linux, or $XDG_CACHE_HOME)."""
    value = os.environ.get(CACHE_ENV)
    return Path(value).expanduser() if value else Path(user_cache_dir("fwsvd_studio", appauthor=False))


def cache_key(**parts) -> str:
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def lock_path(path: Path) -> Path:
    """The lock file of the cache entry at `path`: held while one process looks the entry up, computes and stores it."""
    return path.with_name(f"{path.name}.lock")


@contextmanager
def computing(path: Path | None, enabled: bool = True, timeout: float = LOCK_WAIT_SECONDS,
              cancel: Callable[[], bool] | None = None) -> Iterator[None]:
    """Hold the entry's lock around look-up, compute and store: a second process (or thread) asking for the same
    entry waits for the first one's result and then reads it from the cache instead of computing it again.

    The lock is an OS file lock (fcntl on Unix): the lock of a process that was killed is released with it. Without a
    writable cache folder, inside a data-parallel group (its processes compute each entry together) or past `timeout`
    seconds of waiting, the work goes on unlocked, as before: entries are written atomically either way. No `path`
    (nothing is stored for these inputs): no lock.
    """
    if path is None or not enabled or (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        yield
        return
    lock = FileLock(lock_path(path), is_singleton=True)  # one lock object per path: a thread may take it again
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        held = _acquire(lock, path, timeout, cancel)
    except OSError as exc:  # a read-only cache: nothing will be stored, so there is nothing to share either
        log.debug("no lock for the cache entry %s (%s)", path, exc)
        held = False
    try:
        yield
    finally:
        if held:
            lock.release()


def _acquire(lock: FileLock, path: Path, timeout: float, cancel: Callable[[], bool] | None) -> bool:
    """Take `lock`, saying once that this process waits; False (and a warning) when `timeout` passes first."""
    try:
        lock.acquire(timeout=0)
        return True
    except Timeout:
        pass
    log.info(f"waiting for another process that is computing the same {path.parent.name} entry (lock {lock.lock_file}):"
             " its result is read from the cache when it is done")
    deadline = time.monotonic() + timeout
    while True:
        if cancel is not None and cancel():
            raise Cancelled("Cancelled by the user while waiting for another process's computation.")
        try:
            lock.acquire(timeout=max(0.0, min(0.5, deadline - time.monotonic())))
            return True
        except Timeout:
            if time.monotonic() >= deadline:
                log.warning(f"waited {timeout:.0f} s for another process holding {lock.lock_file}: computing the "
                            "entry here as well")
                return False


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


class StoredTensors(Mapping[str, torch.Tensor]):
    """Tensors of a cache entry already checked whole, each read from disk when asked for: statistics of a model too
    large to hold (`estimation.passes`) stay on disk, one layer's in memory at a time. `names` maps each key to the
    tensor's name in the file."""

    def __init__(self, path: Path, names: dict[str, str]):
        self.path, self.names = path, names

    def __getitem__(self, key: str) -> torch.Tensor:
        name = self.names[key]  # an unknown key is a KeyError, as for a dict, and reads nothing
        from safetensors import safe_open

        try:
            with safe_open(str(self.path), framework="pt") as fh:
                tensor = fh.get_tensor(name)
        except (SafetensorError, OSError) as exc:
            raise FwsvdError(f"The statistics of {key} are kept in {self.path}, which can no longer be read ({exc}): "
                             "estimate them again.") from None
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise FwsvdError(f"The statistics of {key} in {self.path} hold NaN or infinity: estimate them again.")
        return tensor

    def __contains__(self, key: object) -> bool:
        return key in self.names

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def _discard(path: Path, reason: str) -> None:
    """Remove a damaged cache entry (a file the cache wrote), so that it is computed again."""
    log.warning("cache entry %s is damaged (%s): computing it again", path.name, reason)
    path.unlink(missing_ok=True)
