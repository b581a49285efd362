"""One computation at a time on a model whose hooks or flags it changes.

The dashboard shares one loaded model between browser sessions. A Fisher, a Kronecker or an activation pass
installs forward hooks and sets `requires_grad` and train/eval flags for its duration; two such passes at once
record each other's forward calls and restore each other's flags. Each of them holds the model's lock (an RLock:
a computation may call another on the same thread).
"""
from __future__ import annotations

import threading
import weakref

from torch import nn

_locks: weakref.WeakKeyDictionary[nn.Module, threading.RLock] = weakref.WeakKeyDictionary()
_guard = threading.Lock()


def model_lock(model: nn.Module) -> threading.RLock:
    """The lock of `model` (made on first use, dropped with the model)."""
    with _guard:
        lock = _locks.get(model)
        if lock is None:
            lock = _locks[model] = threading.RLock()
        return lock
