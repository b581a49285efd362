"""Fine-tuning a sequence-classification model (dense or compressed) on a task."""
from __future__ import annotations

import copy
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn

from fwsvd_core.compression.lowrank import LowRankLinear
from fwsvd_core.folders import staged_directory
from fwsvd_core.inputs.batching import CancelFn, ProgressFn, batch_indices, check_cancel, collate
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.families import family_of
from fwsvd_core.inputs.precision import autocast_to, float32_parameters, model_dtype


@dataclass
class FinetuneResult:
    steps: int
    examples_seen: int
    first_loss: float
    last_loss: float  # mean over the last tenth of the steps
    seconds: float


def finetune(
    model: nn.Module, tokenizer, data: TaskData, epochs: float = 1.0, lr: float = 5e-5, batch_size: int = 32,
    max_length: int = 128, seed: int = 0, max_steps: int | None = None, warmup_fraction: float = 0.06,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> FinetuneResult:
    """Train every parameter that requires grad with AdamW and a linear warm-up/decay schedule, in place.

    Half-precision weights are trained as float32 copies and rounded back at the end; on a GPU the forward
    pass then runs under autocast in the model's own dtype (with loss scaling for float16).
    """
    stored = model_dtype(model)
    with float32_parameters(model):
        return _train(model, tokenizer, data, epochs, lr, batch_size, max_length, seed, max_steps, warmup_fraction,
                      stored, progress, cancel)


def _train(model: nn.Module, tokenizer, data: TaskData, epochs: float, lr: float, batch_size: int, max_length: int,
           seed: int, max_steps: int | None, warmup_fraction: float, compute_dtype: torch.dtype,
           progress: ProgressFn | None, cancel: CancelFn | None) -> FinetuneResult:
    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    family = family_of(data.task)
    encoded = family.encode(tokenizer, data, max_length, model)
    per_epoch = math.ceil(len(data) / batch_size)
    total = max(1, round(epochs * per_epoch))
    if max_steps is not None:
        total = min(total, max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameter.")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    # transformers' get_linear_schedule_with_warmup gives the first step a learning rate of 0, so a one-step
    # run would change nothing; this schedule counts that step as 1/warmup of the way up
    warmup = max(1, int(warmup_fraction * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
    # float16 gradients underflow without loss scaling; bfloat16 has float32's range and needs none
    scaler = torch.amp.GradScaler(device.type, enabled=device.type == "cuda" and compute_dtype == torch.float16)
    losses: list[float] = []
    model.train()
    step = 0
    try:
        while step < total:
            # shuffled batches of similar length: less padding, still random order
            order = rng.permutation(len(data))
            chunks = [order[i : i + batch_size * 50] for i in range(0, len(order), batch_size * 50)]
            batches = [c[g] for c in chunks for g in batch_indices(encoded.lengths[c], batch_size)]
            rng.shuffle(batches)
            for idx in batches:
                if step >= total:
                    break
                check_cancel(cancel)
                batch = collate(tokenizer, encoded, idx, device)
                targets = family.targets(data, model, idx, encoded, batch).to(device)
                with autocast_to(device, compute_dtype):
                    logits = model(**batch).logits
                loss = family.example_losses(logits, targets, data.task).mean()
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                losses.append(float(loss.detach()))
                step += 1
                if progress is not None:
                    progress(step, total)
    finally:
        model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return FinetuneResult(step, step * batch_size, losses[0], float(np.mean(tail)), time.perf_counter() - start)


RECORD_FILE = "fwsvd_finetune.json"
FINETUNED_KIND = "finetuned"


def save_finetuned(model: nn.Module, tokenizer, directory: str | Path, record: dict) -> Path:
    """save_pretrained plus a record of how the model was made; the folder appears only when complete.

    An existing folder is replaced only when this tool wrote it (a fine-tuned model of its own).
    """
    directory = Path(directory)
    with staged_directory(directory, FINETUNED_KIND) as staging:
        cast(Any, model).save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        # the record is written last: a folder without it is an unfinished one
        (staging / RECORD_FILE).write_text(json.dumps({**record, "complete": True}, indent=1, default=str))
    return directory


def read_record(directory: str | Path) -> dict | None:
    """The record of a finished fine-tuning run, or None for a missing or unfinished one."""
    path = Path(directory) / RECORD_FILE
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if record.get("complete") else None


def finetune_compressed(
    compressed: nn.Module, tokenizer, data: TaskData, steps: int, lr: float = 5e-5, batch_size: int = 32,
    max_length: int = 128, seed: int = 0, factors_only: bool = False,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> tuple[nn.Module, FinetuneResult]:
    """Fine-tune an independent copy of a compressed model; the low-rank factors are trainable weights.

    The compressed view shares its untouched weights with the base model, so training works on a
    full copy. With `factors_only`, everything but the factorized layers stays frozen.
    """
    model = copy.deepcopy(compressed)
    for p in model.parameters():
        p.requires_grad_(not factors_only)
    for module in model.modules():
        if isinstance(module, LowRankLinear):
            module.requires_grad_(True)
    epochs = steps / max(1, math.ceil(len(data) / batch_size))
    result = finetune(model, tokenizer, data, epochs=max(epochs, 1e-9), lr=lr, batch_size=batch_size,
                      max_length=max_length, seed=seed, max_steps=steps, progress=progress, cancel=cancel)
    model.requires_grad_(False)
    return model, result
