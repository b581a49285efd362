"""Tokenizing task data once and cutting it into padded, length-sorted batches."""
from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from fwsvd_core.errors import Cancelled
from fwsvd_core.inputs.data import TaskData

ProgressFn = Callable[[int, int], None]  # (done, total)
CancelFn = Callable[[], bool]  # returns True when the caller wants to stop


@dataclass
class Encoded:
    """Token ids per example, without padding."""

    input_ids: list[list[int]]
    extra: dict[str, list[list[int]]]  # token_type_ids where the tokenizer makes them

    @property
    def lengths(self) -> np.ndarray:
        return np.fromiter((len(x) for x in self.input_ids), dtype=np.int64, count=len(self.input_ids))


def accepts_token_types(model) -> bool:
    """Whether the model's forward takes token_type_ids (DistilBERT's, for one, does not)."""
    return "token_type_ids" in inspect.signature(model.forward).parameters


def encode(tokenizer, data: TaskData, max_length: int = 128, model=None) -> Encoded:
    """Token ids of every example; token types only where the model takes them."""
    args = (data.text_a,) if data.text_b is None else (data.text_a, data.text_b)
    out = tokenizer(*args, truncation=True, max_length=max_length)
    keep_types = "token_type_ids" in out and (model is None or accepts_token_types(model))
    extra = {"token_type_ids": out["token_type_ids"]} if keep_types else {}
    return Encoded(out["input_ids"], extra)


def collate(tokenizer, encoded: Encoded, indices: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
    """Pad the chosen examples to the longest among them."""
    features = [{"input_ids": encoded.input_ids[i], **{k: v[i] for k, v in encoded.extra.items()}} for i in indices]
    batch = tokenizer.pad(features, return_tensors="pt")
    return {k: v.to(device) for k, v in batch.items()}


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
