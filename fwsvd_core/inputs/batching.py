"""Tokenizing task data once and cutting it into padded, length-sorted batches."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from fwsvd_core.errors import Cancelled

ProgressFn = Callable[[int, int], None]  # (done, total)
CancelFn = Callable[[], bool]  # returns True when the caller wants to stop


@dataclass
class Encoded:
    """Token ids per example, without padding; for token-level tasks, a target per token (-100: not scored)."""

    input_ids: list[list[int]]
    extra: dict[str, list[list[int]]]  # token_type_ids where the tokenizer makes them
    token_targets: list[list[int]] | None = None

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def accepts_token_types(model) -> bool:
    """Whether the model's forward takes token_type_ids (DistilBERT's, for one, does not)."""
    return "token_type_ids" in inspect.signature(model.forward).parameters


def collate(tokenizer, encoded: Encoded, indices: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    """Pad the chosen examples to the longest among them."""
    features = [{"input_ids": encoded.input_ids[i], **{k: v[i] for k, v in encoded.extra.items()}} for i in indices]
    batch = tokenizer.pad(features, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}


def collate_token_targets(encoded: Encoded, indices: np.ndarray, attention_mask: torch.Tensor) -> torch.Tensor:
    """[B, length]: the chosen examples' token targets at their real tokens (whichever side the tokenizer pads),
    -100 (ignored) at the padding."""
    if encoded.token_targets is None:
        raise ValueError("these examples carry no token targets")
    out = torch.full(attention_mask.shape, -100, dtype=torch.long, device=attention_mask.device)
    for row, i in enumerate(indices):
        positions = attention_mask[row].nonzero().flatten()
        out[row, positions] = torch.as_tensor(encoded.token_targets[i], dtype=torch.long, device=out.device)
    return out


def batch_indices(lengths: np.ndarray, batch_size: int, sort_by_length: bool = True) -> list[np.ndarray]:
    """Example indices per batch; sorting by length keeps padding, and so wasted work, small."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    order = np.argsort(-lengths, kind="stable") if sort_by_length else np.arange(len(lengths))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def check_cancel(cancel: CancelFn | None) -> None:
    if cancel is not None and cancel():
        raise Cancelled("Cancelled by the user.")


def iter_batches(
    tokenizer, encoded: Encoded, batch_size: int, device: torch.device,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None, sort_by_length: bool = True,
) -> Iterator[tuple[np.ndarray, dict[str, torch.Tensor]]]:
    """Yield (indices, batch) pairs, reporting progress and honouring the cancel hook between batches."""
    groups = batch_indices(encoded.lengths, batch_size, sort_by_length)
    total, done = len(encoded.input_ids), 0
    for idx in groups:
        check_cancel(cancel)
        yield idx, collate(tokenizer, encoded, idx, device)
        done += len(idx)
        if progress is not None:
            progress(done, total)
