"""Telling quickly whether the Hugging Face hub can be reached."""
from __future__ import annotations

import os
import socket
import threading
from functools import lru_cache
from urllib.parse import urlparse

from huggingface_hub import constants

_TRUE = {"1", "true", "yes", "on"}


def offline_by_setting() -> bool:
    """True when the user asked for offline mode through the usual HF variables.

    huggingface_hub reads HF_HUB_OFFLINE once, at import; the variables are read again here because the
    dashboard and the tests set them later, and datasets and transformers have their own.
    """
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")
    return constants.is_offline_mode() or any(os.environ.get(v, "").strip().lower() in _TRUE for v in names)


def _can_connect(host: str, port: int, timeout: float) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


@lru_cache(maxsize=1)
def _probe(timeout: float) -> bool:
    url = urlparse(constants.ENDPOINT)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    result: list[bool] = []
    # name resolution has no timeout of its own, so the probe runs in a thread we stop waiting for
    worker = threading.Thread(target=lambda: result.append(_can_connect(host, port, timeout)), daemon=True)
    worker.start()
    worker.join(timeout + 0.5)
    return bool(result and result[0])


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the hub answers within seconds (remembered for the process); False in offline mode."""
    if offline_by_setting():
        return False
    return _probe(timeout)


LOCAL_MODEL_HINT = (
    "Local options: the built-in demo ('demo:sst2'), a local directory saved with save_pretrained, "
    "or a model in the Hugging Face cache (set HF_HUB_OFFLINE=1 to use it)."
)
LOCAL_DATA_HINT = (
    "Local options: a GLUE-format folder (set FWSVD_DATA_DIR or pass --data-dir), "
    "or a CSV/TSV/JSON file with named columns."
)
