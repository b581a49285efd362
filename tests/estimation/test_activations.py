"""Calibration statistics: layers reading the same input share one buffer, and every layer's statistics are right."""
import pytest
import torch

from fwsvd_core.cache import cache_root
from fwsvd_core.estimation.activations import collect_activation_stats, estimate_activation_stats
from fwsvd_core.inputs.batching import collate
from fwsvd_core.inputs.families import encode
from fwsvd_core.inputs.layers import require_layers
from fwsvd_core.loading import load_model


def reference_second_moments(model, tokenizer, data):
    """Each layer's own inputs, one example at a time, padding-free: X^T X / tokens."""
    layers = require_layers(model)
    grams = {l.name: torch.zeros(l.in_features, l.in_features, dtype=torch.float64) for l in layers}
    tokens = dict.fromkeys(grams, 0)
    captured = {}
    handles = [model.get_submodule(l.name).register_forward_hook(
        lambda m, args, out, name=l.name: captured.__setitem__(name, args[0].detach().reshape(-1, args[0].shape[-1])))
        for l in layers]
    encoded = encode(tokenizer, data, 128, model)
    with torch.no_grad():
        for i in range(len(data)):
            model(**collate(tokenizer, encoded, [i], torch.device("cpu")))
            for name, x in captured.items():
                grams[name] += x.double().T @ x.double()
                tokens[name] += x.shape[0]
    for h in handles:
        h.remove()
    return {n: (g / tokens[n]).float() for n, g in grams.items()}


@pytest.mark.parametrize("arch, shared", [("bert", {"key": "query", "value": "query"}),
                                          ("llama", {"k_proj": "q_proj", "v_proj": "q_proj", "up_proj": "gate_proj"})])
def test_layers_reading_one_input_share_its_statistics_and_every_layer_gets_its_own_input(arch, shared, tiny_models,
                                                                                          sst2_small):
    loaded = load_model(tiny_models[arch], device="cpu")
    data = sst2_small[0].sample(12, seed=3)
    stats = collect_activation_stats(loaded.model, loaded.tokenizer, data, batch_size=5)
    expected = {n: n.rpartition(".")[0] + "." + shared[n.rpartition(".")[2]] for n in stats.second_moment
                if n.rpartition(".")[2] in shared}
    assert stats.shared_with == expected  # nothing else: later layers whose inputs reuse freed memory are not merged
    for name, owner in stats.shared_with.items():
        assert stats.second_moment[name] is stats.second_moment[owner]  # one buffer
    reference = reference_second_moments(loaded.model, loaded.tokenizer, data)
    for name, moment in stats.second_moment.items():
        torch.testing.assert_close(moment, reference[name], rtol=1e-4, atol=1e-6)


def test_shared_statistics_are_cached_once_and_read_back_whole(tiny_models, sst2_small):
    loaded = load_model(tiny_models["llama"], device="cpu")
    first = estimate_activation_stats(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)
    [entry] = list((cache_root() / "activations").glob("*.safetensors"))
    from safetensors.torch import load_file

    stored = load_file(str(entry))
    assert len([k for k in stored if k.startswith("second/")]) == len(first.second_moment) - len(first.shared_with)
    again = estimate_activation_stats(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)
    assert again.shared_with == first.shared_with and again.key == first.key
    for name in first.second_moment:
        torch.testing.assert_close(again.second_moment[name], first.second_moment[name])
        torch.testing.assert_close(again.mean_abs[name], first.mean_abs[name])
