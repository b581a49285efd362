"""Fine-tuning a sequence-classification model (dense or compressed) on a task."""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .batching import CancelFn, ProgressFn, batch_indices, check_cancel, collate, encode
from .data import TaskData
from .fisher import per_example_loss, task_targets


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
    """Train every parameter that requires grad with AdamW and a linear warm-up/decay schedule, in place."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    device = next(model.parameters()).device
    encoded = encode(tokenizer, data, max_length, model)
    per_epoch = math.ceil(len(data) / batch_size)
    total = max(1, int(round(epochs * per_epoch)))
    if max_steps is not None:
        total = min(total, max_steps)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameter.")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    warmup = max(1, int(warmup_fraction * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup)))
    )
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
                targets = task_targets(data, model, idx).to(device)
                loss = per_example_loss(model(**batch).logits, targets, data.task.is_regression).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                losses.append(float(loss.detach()))
                step += 1
                if progress is not None:
                    progress(step, total)
    finally:
        model.eval()
    tail = losses[-max(1, len(losses) // 10):]
    return FinetuneResult(step, step * batch_size, losses[0], float(np.mean(tail)), time.perf_counter() - start)
