"""Per-example gradients of the task loss at every compressible layer, without forming any weight gradient.

For an example with layer inputs X [tokens, in] and gradients Gam [tokens, out] of its loss at the layer's
outputs, the gradient of the loss with respect to the weight is Gam^T X. The Fisher, its Kronecker factors
and the directional Fisher are all computed from X and Gam, one batch at a time.
"""
from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from fwsvd_core.inputs.batching import CancelFn, ProgressFn, iter_batches
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.exclusive import model_lock
from fwsvd_core.inputs.families import family_of
from fwsvd_core.inputs.layers import LayerInfo, block_module_name, find_layers


class _Capture:
    """Forward hooks that keep each layer's inputs and outputs (a shared layer: one entry per call) while `recording`:
    a checkpointed block's forward runs again during the backward pass, and those calls are not the batch's."""

    def __init__(self, model: nn.Module, layers: list[LayerInfo]):
        self.inputs: dict[str, list[torch.Tensor]] = {l.name: [] for l in layers}
        self.outputs: dict[str, list[torch.Tensor]] = {l.name: [] for l in layers}
        self.recording = True
        modules = dict(model.named_modules())
        self.handles = [modules[l.name].register_forward_hook(self._hook(l.name)) for l in layers]

    def _hook(self, name: str):
        def hook(module, args, output):
            if self.recording:
                self.inputs[name].append(args[0].detach())
                self.outputs[name].append(output)
        return hook

    def clear(self) -> None:
        for store in (*self.inputs.values(), *self.outputs.values()):
            store.clear()
        self.recording = True

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def _stack_tokens(tensors: list[torch.Tensor], batch: int) -> torch.Tensor:
    """[B, tokens of all calls, features]: a shared layer's calls add up in one per-example gradient."""
    if len(tensors) == 1:
        return tensors[0].reshape(batch, -1, tensors[0].shape[-1])  # a view: no copy for the common case
    return torch.cat([t.reshape(batch, -1, t.shape[-1]) for t in tensors], dim=1)


@dataclass
class GradientBatch:
    """One batch's layer inputs and output gradients, [B, tokens, features] per layer, finite examples only."""

    inputs: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]
    n_good: int  # the examples kept: B above
    attention: torch.Tensor | None = None  # [B, sequence]: 1 for a real token, 0 for padding

    def token_mask(self, name: str) -> torch.Tensor:
        """[B, tokens, 1]: 1 for the layer's real tokens, 0 for padding (all 1 where tokens do not follow the text)."""
        x = self.inputs[name]
        if self.attention is None or x.shape[1] % self.attention.shape[1]:
            return x.new_ones(x.shape[0], x.shape[1], 1)
        calls = x.shape[1] // self.attention.shape[1]  # a shared layer: its calls' tokens one after the other
        return self.attention.to(device=x.device, dtype=x.dtype).repeat(1, calls)[:, :, None]


def _finite_examples(losses: torch.Tensor, inputs: dict[str, torch.Tensor], grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """Which examples of the batch have a finite loss, finite layer inputs and finite output gradients."""
    good = torch.isfinite(losses.detach())
    for name, g in grads.items():
        good &= torch.isfinite(g).flatten(1).all(dim=1)
        good &= torch.isfinite(inputs[name]).flatten(1).all(dim=1)
    return good


def gradient_batches(
    model: nn.Module, tokenizer, data: TaskData, layers: list[LayerInfo], batch_size: int, max_length: int,
    progress: ProgressFn | None = None, cancel: CancelFn | None = None,
) -> Iterator[GradientBatch]:
    """Yield each batch's per-example layer inputs and output gradients of the task loss.

    One backward pass of the summed loss per batch: each example's loss reaches only its own rows, so
    the output gradients are per example. Examples whose loss or gradients are not finite are dropped.
    The model's lock is held throughout: its hooks and flags are this pass's alone.
    """
    with model_lock(model):
        yield from _gradient_batches(model, tokenizer, data, layers, batch_size, max_length, progress, cancel)


def _gradient_batches(
    model: nn.Module, tokenizer, data: TaskData, layers: list[LayerInfo], batch_size: int, max_length: int,
    progress: ProgressFn | None, cancel: CancelFn | None,
) -> Iterator[GradientBatch]:
    modules = dict(model.named_modules())
    weights = {id(modules[l.name].weight) for l in layers}
    saved_flags = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    config: Any = getattr(model, "config", None)
    saved_cache_flag = getattr(config, "use_cache", None)
    capture = _Capture(model, layers)
    device = next(model.parameters()).device
    try:
        model.eval()  # no dropout: the gradients of the deployed function, and reproducible
        if saved_cache_flag is not None:
            config.use_cache = False  # a decoder's key-value cache is no use here, and a recomputed block would extend it
        for p, _ in saved_flags:
            p.requires_grad_(id(p) in weights)  # outputs need a graph; no other gradient is wanted
        family = family_of(data.task)
        encoded = family.encode(tokenizer, data, max_length, model)
        for idx, batch in iter_batches(tokenizer, encoded, batch_size, device, progress, cancel):
            capture.clear()
            logits = model(**batch).logits
            targets = family.targets(data, model, idx, encoded, batch).to(device)
            losses = family.example_losses(logits, targets, data.task)
            names = list(capture.outputs)
            flat = [o for n in names for o in capture.outputs[n]]
            capture.recording = False
            grads_flat = torch.autograd.grad(torch.nan_to_num(losses).sum(), flat, allow_unused=True)
            grads, k = {}, 0
            for n in names:
                count = len(capture.outputs[n])
                grads[n] = [torch.zeros_like(o) if g is None else g
                            for o, g in zip(capture.outputs[n], grads_flat[k : k + count], strict=True)]
                k += count
            in_batch = len(idx)
            inputs = {name: _stack_tokens(capture.inputs[name], in_batch) for name in names}
            outputs = {name: _stack_tokens(grads[name], in_batch) for name in names}
            good = _finite_examples(losses, inputs, outputs)
            attention = batch.get("attention_mask")
            if not bool(good.all()):  # leave the bad examples out entirely: 0 * NaN would still be NaN
                inputs = {name: x[good] for name, x in inputs.items()}
                outputs = {name: g[good] for name, g in outputs.items()}
                attention = None if attention is None else attention[good]
            yield GradientBatch(inputs, outputs, int(good.sum()), attention)
    finally:
        capture.remove()
        for p, flag in saved_flags:
            p.requires_grad_(flag)
        model.train(was_training)
        if saved_cache_flag is not None:
            config.use_cache = saved_cache_flag


def captured_bytes(layers: list[LayerInfo], tokens: int, element_bytes: int) -> int:
    """What `gradient_batches` holds of a batch of `tokens` tokens: every layer's inputs and output gradients, in the
    model's dtype (a pass over a group of layers captures the group's)."""
    return tokens * element_bytes * sum(l.in_features + l.out_features for l in layers)


@contextmanager
def activation_checkpointing(model: nn.Module, enabled: bool = True) -> Iterator[None]:
    """Every repeated block's forward checkpointed (non-reentrant) while inside: a backward pass keeps each block's
    input only and runs the block again where its activations are needed. The statistics are the same; by the estimate
    (`inputs.memory.backward_activations`) a 2048-token backward through a 7B decoder in bfloat16 keeps about 12 GiB
    of activations without it, 1.3 GiB with it."""
    if not enabled:
        yield
        return
    names = sorted({b for l in find_layers(model) if (b := block_module_name(l.name)) is not None})
    blocks = [model.get_submodule(name) for name in names]
    # accelerate keeps its own wrapper in the instance's `forward`: put back exactly what was there
    saved = [(block, block.__dict__.get("forward")) for block in blocks]
    try:
        for block in blocks:
            block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
        yield
    finally:
        for block, own in saved:
            if own is None:
                block.__dict__.pop("forward", None)
            else:
                block.forward = own


