"""What tells a file, or a folder's files, from an edited one without reading it: size and modification time."""
from __future__ import annotations

from pathlib import Path

Stamp = tuple[tuple[str, int, int], ...]


def files_stamp(path: str | Path) -> Stamp:
    """(name, size, mtime_ns) of a file, or of each file directly in a folder (a saved model is one flat folder);
    () when there is nothing there. Changes whenever a file is rewritten in place or replaced."""
    path = Path(path).expanduser()
    try:
        if path.is_file():
            files = [path]
        elif path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
        else:
            return ()
        return tuple((p.name, (st := p.stat()).st_size, st.st_mtime_ns) for p in files)
    except OSError:  # removed while looked at: the loader says what is wrong
        return ()
