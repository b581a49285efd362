"""Greedy continuations of a prompt by a dense and a compressed language model: what compression does to the text."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.batching import check_cancel
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.families import encode
from fwsvd_core.inputs.tasks import TaskSpec

MAX_NEW_TOKENS = 30


@dataclass(frozen=True)
class Continuations:
    """A prompt and what each model writes after it (greedy: the most likely next token, each time)."""

    prompt: str
    dense: str
    compressed: str


def prompt_ids(tokenizer, task: TaskSpec, prompt: str, model: nn.Module | None = None) -> list[int]:
    """The prompt's token ids as the task's family encodes text (a start token only where the tokenizer's
    special tokens are a start marker alone)."""
    if not prompt.strip():
        raise DataError("Type a prompt for the models to continue.")
    data = TaskData(task, "prompt", [prompt], None, np.zeros(1), "prompt")
    return list(encode(tokenizer, data, max_length=positions(model) if model is not None else 512).input_ids[0])


def positions(model: nn.Module) -> int:
    """How many tokens the model reads at most (its position embeddings; 2048 where the config names none)."""
    config = model.config
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


class _Steps:
    """A stopping criterion that only reports each generated token and stops generation by raising on Cancel."""

    def __init__(self, total: int, progress: Callable[[int, int], None] | None, cancel: Callable[[], bool] | None):
        self.total, self.progress, self.cancel, self.done = total, progress, cancel, 0

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        check_cancel(self.cancel)
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)
        return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)


def greedy_continuation(model: nn.Module, tokenizer, task: TaskSpec, prompt: str, max_new_tokens: int = MAX_NEW_TOKENS,
                        progress: Callable[[int, int], None] | None = None,
                        cancel: Callable[[], bool] | None = None) -> str:
    """The text `model` writes after `prompt`, taking the most likely token each time (deterministic), up to
    `max_new_tokens` tokens or its end-of-text token. A prompt too long for the model keeps its last tokens."""
    from transformers import StoppingCriteriaList

    ids = prompt_ids(tokenizer, task, prompt, model)
    room = positions(model) - max_new_tokens
    if room < 1:
        raise DataError(f"The model reads at most {positions(model)} tokens: too few to continue a prompt by "
                        f"{max_new_tokens}.")
    ids = ids[-room:]
    device = next(model.parameters()).device
    input_ids = torch.tensor([ids], device=device)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    generate = getattr(model, "generate", None)
    if generate is None:
        raise DataError(f"{type(model).__name__} cannot generate text: it has no language-model head.")
    with torch.no_grad():
        out = generate(input_ids, attention_mask=torch.ones_like(input_ids), max_new_tokens=max_new_tokens,
                             min_new_tokens=0, do_sample=False, num_beams=1, pad_token_id=pad,
                             stopping_criteria=StoppingCriteriaList([_Steps(max_new_tokens, progress, cancel)]))
    return tokenizer.decode(out[0, len(ids):].tolist(), skip_special_tokens=True).strip()


def continuations(dense: nn.Module, compressed: nn.Module, tokenizer, task: TaskSpec, prompt: str,
                  max_new_tokens: int = MAX_NEW_TOKENS, progress: Callable[[int, int], None] | None = None,
                  cancel: Callable[[], bool] | None = None) -> Continuations:
    """The greedy continuation of `prompt` by the dense and by the compressed model."""
    def half(offset: int):
        return None if progress is None else lambda done, total: progress(offset + done, 2 * total)

    return Continuations(
        prompt,
        greedy_continuation(dense, tokenizer, task, prompt, max_new_tokens, half(0), cancel),
        greedy_continuation(compressed, tokenizer, task, prompt, max_new_tokens, half(max_new_tokens), cancel))
