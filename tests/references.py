"""Slow, obviously-correct references the fast code is compared against (one backward pass per example)."""
import numpy as np
import torch
from transformers.pytorch_utils import Conv1D

from fwsvd_core.estimation.losses import per_example_loss, task_targets
from fwsvd_core.inputs.batching import collate
from fwsvd_core.inputs.families import encode
from fwsvd_core.inputs.layers import find_layers


def weight_grad(module):
    """The weight's gradient as [out, in] (GPT-2's Conv1D stores [in, out])."""
    return module.weight.grad.t() if isinstance(module, Conv1D) else module.weight.grad


def example_gradients(model, tokenizer, data):
    """Each example's weight gradient per layer, slowly: one backward pass per example."""
    layers = find_layers(model)
    encoded = encode(tokenizer, data, 128, model)
    for i in range(len(data)):
        model.zero_grad()
        batch = collate(tokenizer, encoded, np.array([i]), torch.device("cpu"))
        loss = per_example_loss(model(**batch).logits, task_targets(data, model, [i]), data.task.is_regression).sum()
        loss.backward()
        yield {l.name: weight_grad(model.get_submodule(l.name)).clone() for l in layers}


def reference_fisher(model, tokenizer, data):
    """The definition, slowly: squared per-example gradients averaged."""
    out = {l.name: torch.zeros(l.out_features, l.in_features) for l in find_layers(model)}
    for grads in example_gradients(model, tokenizer, data):
        for name, g in grads.items():
            out[name] += g**2
    return {k: v / len(data) for k, v in out.items()}


def example_signals(model, tokenizer, data):
    """Each example's inputs X [tokens, in] and loss gradients Gam [tokens, out] at every layer, one example at a
    time (no padding), from hooks and a backward pass of that example's loss alone."""
    layers = find_layers(model)
    encoded = encode(tokenizer, data, 128, model)
    captured = {}

    def hook_for(name):
        def hook(module, args, output):
            output.retain_grad()
            captured[name] = (args[0].detach()[0], output)
        return hook

    handles = [model.get_submodule(l.name).register_forward_hook(hook_for(l.name)) for l in layers]
    try:
        for i in range(len(data)):
            model.zero_grad()
            batch = collate(tokenizer, encoded, np.array([i]), torch.device("cpu"))
            loss = per_example_loss(model(**batch).logits, task_targets(data, model, [i]), data.task.is_regression).sum()
            loss.backward()
            yield {name: (x.clone(), out.grad[0].clone()) for name, (x, out) in captured.items()}
    finally:
        for h in handles:
            h.remove()
