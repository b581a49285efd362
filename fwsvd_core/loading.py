"""The one entry point for loading a model by name: a built-in demo, a compressed export, a local directory or a hub id.

Nothing in fwsvd_core imports this module; it sits above the modules it dispatches to.
"""
from __future__ import annotations

from pathlib import Path

import torch

from fwsvd_core.compression.export import is_compressed_dir, load_compressed
from fwsvd_core.demo import is_demo, load_demo
from fwsvd_core.errors import ModelLoadError
from fwsvd_core.inputs.batching import ProgressFn
from fwsvd_core.inputs.models import LoadedModel, load_pretrained, require_finite_weights


def load_model(
    source: str | Path,
    num_labels: int | None = None,
    device: str | torch.device | None = None,
    trust_remote_code: bool = False,
    progress: ProgressFn | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    token: str | bool | None = None,
    device_map: str | dict | None = None,
    data_dir: str | Path | None = None,
    family: str | None = None,
) -> LoadedModel:
    """'demo:NAME' (built on first use, `progress` reporting its fine-tuning steps), a folder written by
    `export.save_compressed`, or a saved model (local directory or hub id). NaN or infinite weights are refused.

    `dtype` ('float32', 'bfloat16', 'float16' or a torch dtype) converts the weights; None or 'auto' keeps the
    dtype they are stored in. `revision`, `token` and `device_map` (accelerate's placement over GPUs, CPU and disk)
    go to transformers' from_pretrained for saved models. `data_dir` is the GLUE folder a demo is built from
    when the hub is out of reach (default: FWSVD_DATA_DIR). `family` names the task family whose model class a saved
    model is loaded as (None: the one its config names; `inputs.families`)."""
    if device_map is not None and is_demo(str(source)):
        raise ModelLoadError("device_map applies to saved models (a hub id, a directory or a compressed export); the "
                             "built-in demos are loaded whole on --device.")
    if is_demo(str(source)):
        return load_demo(str(source), device, data_dir, progress=progress, dtype=dtype)
    local = Path(source).expanduser()
    if local.is_dir() and is_compressed_dir(local):
        loaded = load_compressed(local, device, trust_remote_code=trust_remote_code, dtype=dtype,
                                 device_map=device_map)
        require_finite_weights(loaded.model, f"compressed model {local}")
        return loaded
    return load_pretrained(source, num_labels, device, trust_remote_code, dtype, revision, token, device_map, family)
