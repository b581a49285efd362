"""An encoder's weights run as a causal decoder: the language-model head it lacks, started where it can teach.

A sentence encoder (MiniLM) saved without its masked-LM head gets transformers' random head when loaded as a causal
language model. Started instead as identity transform (the last hidden state read against the tied word embeddings)
and a bias of the training text's log token frequencies, the untrained decoder already predicts the text's
unigram distribution, and fine-tuning starts from a perplexity in the hundreds rather than the tens of thousands.
"""
from __future__ import annotations

from typing import Any, cast

import numpy as np
import torch
from torch import nn

from fwsvd_core.errors import ModelLoadError
from fwsvd_core.inputs.data import TaskData

SMOOTHING = 0.1  # added to each token's count: a token the text never shows keeps a small probability


def token_log_frequencies(windows: TaskData, vocab_size: int) -> np.ndarray:
    """Centred log relative frequency of each vocabulary entry in `windows` (lists of token ids), smoothed."""
    counts = np.zeros(vocab_size, dtype=np.float64)
    for window in windows.text_a:
        counts += np.bincount(np.asarray(window, dtype=np.int64), minlength=vocab_size)[:vocab_size]
    logp = np.log((counts + SMOOTHING) / (counts.sum() + SMOOTHING * vocab_size))
    return logp - logp.mean()


def start_decoder_head(model: nn.Module, tokenizer, train: TaskData) -> None:
    """Start a BERT-style LM head (`cls.predictions`: dense, LayerNorm, tied decoder, bias) as identity transform
    with the training text's log token frequencies as its bias; the word embeddings stay tied as the output layer."""
    head = getattr(getattr(model, "cls", None), "predictions", None)
    if head is None or not hasattr(head, "transform") or not hasattr(head, "bias"):
        raise ModelLoadError(f"{type(model).__name__} has no BERT-style language-model head (cls.predictions) to start.")
    output = cast(Any, model).get_output_embeddings()
    if output.weight.data_ptr() != cast(Any, model).get_input_embeddings().weight.data_ptr():
        raise ModelLoadError("The decoder's output layer is not tied to its word embeddings.")
    dense, norm = head.transform.dense, head.transform.LayerNorm
    with torch.no_grad():
        dense.weight.copy_(torch.eye(dense.weight.shape[0], dense.weight.shape[1]))
        dense.bias.zero_()
        norm.weight.fill_(1.0)
        norm.bias.zero_()
        bias = torch.as_tensor(token_log_frequencies(train, output.weight.shape[0]), dtype=head.bias.dtype)
        head.bias.copy_(bias)
        if getattr(output, "bias", None) is not None and output.bias.data_ptr() != head.bias.data_ptr():
            output.bias.copy_(bias)
