import re

import numpy as np
import pytest
import torch
from conftest import ARCHITECTURES
from references import example_gradients, reference_fisher, weight_grad

from fwsvd_core.cache import cache_root
from fwsvd_core.estimation.fisher import compute_fisher, directional_fisher, estimate_fisher
from fwsvd_core.estimation.losses import per_example_loss, task_targets
from fwsvd_core.inputs.batching import collate
from fwsvd_core.inputs.families import encode
from fwsvd_core.inputs.layers import find_layers
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model


def max_relative_error(a, b):
    return max(float((a[k] - b[k]).norm() / b[k].norm()) for k in b)


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_per_sample_equals_a_loop_of_single_backward_passes(arch, tiny_models, sst2_small):
    loaded = load_model(tiny_models[arch], device="cpu")
    data = sst2_small[0].sample(12, seed=5)
    fast = compute_fisher(loaded.model, loaded.tokenizer, data, estimator="per-sample", batch_size=5)
    assert fast.n_examples == 12 and fast.n_skipped == 0
    assert max_relative_error(fast.per_layer, reference_fisher(loaded.model, loaded.tokenizer, data)) < 1e-4


def test_per_sample_on_real_minilm_regression_pairs(minilm_dir, glue_dir):
    from fwsvd_core.inputs.data import load_glue_folder

    loaded = load_model(minilm_dir, num_labels=1, device="cpu")
    data = load_glue_folder(get_task("stsb"), glue_dir, "train").sample(6, seed=0)
    fast = compute_fisher(loaded.model, loaded.tokenizer, data, estimator="per-sample", batch_size=4)
    assert max_relative_error(fast.per_layer, reference_fisher(loaded.model, loaded.tokenizer, data)) < 1e-4


def test_batch_estimator_squares_mini_batch_gradients(tiny_models, sst2_small):
    loaded = load_model(tiny_models["bert"], device="cpu")
    data = sst2_small[0].sample(8, seed=1)
    result = compute_fisher(loaded.model, loaded.tokenizer, data, estimator="batch", batch_size=8)
    loaded.model.zero_grad()
    batch = collate(loaded.tokenizer, encode(loaded.tokenizer, data, 128, loaded.model), np.arange(8), torch.device("cpu"))
    per_example_loss(loaded.model(**batch).logits, task_targets(data, loaded.model, np.arange(8)), False).mean().backward()
    for l in find_layers(loaded.model):
        torch.testing.assert_close(result.per_layer[l.name], weight_grad(loaded.model.get_submodule(l.name)) ** 2,
                                   rtol=1e-4, atol=1e-12)
    per_sample = compute_fisher(loaded.model, loaded.tokenizer, data, estimator="per-sample")
    name = find_layers(loaded.model)[0].name
    assert float(result.per_layer[name].sum()) < float(per_sample.per_layer[name].sum())  # the batch one is biased low


def test_nan_examples_are_skipped_not_spread(tiny_models, sst2_small):
    loaded = load_model(tiny_models["bert"], device="cpu")
    data = sst2_small[0].sample(6, seed=2)
    data.text_a[3] = "xylophone " + data.text_a[3]
    marker = loaded.tokenizer("xylophone")["input_ids"][1]
    clean = compute_fisher(loaded.model, loaded.tokenizer, data.subset([0, 1, 2, 4, 5]), estimator="per-sample")
    seen = {}

    def remember_ids(module, args, kwargs):
        seen["rows"] = kwargs["input_ids"][:, 1] == marker

    def poison(module, args, output):  # NaN activations for the marked example only
        return torch.where(seen["rows"].view(-1, 1, 1), float("nan"), output)

    hooks = [loaded.model.register_forward_pre_hook(remember_ids, with_kwargs=True),
             loaded.model.get_submodule(find_layers(loaded.model)[0].name).register_forward_hook(poison)]
    try:
        result = compute_fisher(loaded.model, loaded.tokenizer, data, estimator="per-sample", batch_size=6)
    finally:
        for h in hooks:
            h.remove()
    assert int(seen["rows"].sum()) == 1
    assert result.n_skipped == 1 and result.n_examples == 5
    assert all(torch.isfinite(f).all() for f in result.per_layer.values())
    assert max_relative_error(result.per_layer, clean.per_layer) < 1e-4


def test_cache_is_reused_and_a_corrupt_entry_recomputed(tiny_models, sst2_small):
    loaded = load_model(tiny_models["bert"], device="cpu")
    first = estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)
    second = estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)
    assert not first.from_cache and second.from_cache
    for k in first.per_layer:
        torch.testing.assert_close(first.per_layer[k], second.per_layer[k])
    (entry,) = (cache_root() / "fisher").glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:100])
    third = estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)
    assert not third.from_cache
    other = estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8, seed=1)
    assert not other.from_cache


def test_progress_and_cancel(tiny_models, sst2_small):
    from fwsvd_core.errors import Cancelled

    loaded = load_model(tiny_models["bert"], device="cpu")
    seen = []
    compute_fisher(loaded.model, loaded.tokenizer, sst2_small[0].sample(20), batch_size=8,
                   progress=lambda d, t: seen.append((d, t)))
    assert seen == [(8, 20), (16, 20), (20, 20)]
    with pytest.raises(Cancelled):
        compute_fisher(loaded.model, loaded.tokenizer, sst2_small[0].sample(20), batch_size=8, cancel=lambda: True)
    assert all(p.requires_grad for p in loaded.model.parameters())  # flags restored after the cancel


@pytest.mark.parametrize("arch", ["bert", "albert", "gpt2"])
def test_directional_fisher_equals_projections_of_single_example_gradients(arch, tiny_models, sst2_small):
    loaded = load_model(tiny_models[arch], device="cpu")
    data = sst2_small[0].sample(7, seed=2)
    layers = find_layers(loaded.model)
    gen = torch.Generator().manual_seed(0)
    directions = {l.name: {"a": torch.randn(l.out_features, l.in_features, generator=gen),
                           "b": torch.randn(l.out_features, l.in_features, generator=gen)} for l in layers[:3]}
    fast = directional_fisher(loaded.model, loaded.tokenizer, data, directions, batch_size=3)
    dots = {n: {k: [] for k in d} for n, d in directions.items()}
    for grads in example_gradients(loaded.model, loaded.tokenizer, data):
        for n, d in directions.items():
            for k, dw in d.items():
                dots[n][k].append(float((grads[n] * dw).sum()))
    assert set(fast) == set(directions)
    for n, d in directions.items():
        for k in d:
            dot = np.array(dots[n][k])
            assert fast[n][k][0] == pytest.approx(dot.mean(), rel=1e-4, abs=1e-7)
            assert fast[n][k][1] == pytest.approx((dot**2).mean(), rel=1e-4)


def test_directional_fisher_names_an_unknown_layer(tiny_models, sst2_small):
    from fwsvd_core.errors import FwsvdError

    loaded = load_model(tiny_models["bert"], device="cpu")
    with pytest.raises(FwsvdError, match=re.escape("no.such.layer")):
        directional_fisher(loaded.model, loaded.tokenizer, sst2_small[0].sample(2), {"no.such.layer": {"a": torch.zeros(2, 2)}})


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("estimator", ["per-sample", "batch"])
def test_the_low_memory_fisher_keeps_exactly_the_row_and_column_sums_of_the_full_one(arch, estimator, tiny_models,
                                                                                        sst2_small):
    loaded = load_model(tiny_models[arch], device="cpu")
    data = sst2_small[0].sample(10, seed=5)
    full = compute_fisher(loaded.model, loaded.tokenizer, data, estimator=estimator, batch_size=4)
    profiles = compute_fisher(loaded.model, loaded.tokenizer, data, estimator=estimator, batch_size=4, form="profiles")
    assert profiles.form == "profiles" and not profiles.per_layer and full.form == "full"
    assert profiles.n_examples == full.n_examples
    for name, f in full.per_layer.items():
        torch.testing.assert_close(profiles.row_sums(name), f.sum(dim=1), rtol=1e-4, atol=1e-12)
        torch.testing.assert_close(profiles.col_sums(name), f.sum(dim=0), rtol=1e-4, atol=1e-12)
    assert profiles.mass() == pytest.approx(full.mass(), rel=1e-4)


def test_the_low_memory_fisher_is_chosen_when_the_full_one_would_not_fit_and_cached(tiny_models, sst2_small,
                                                                                     full_fisher_does_not_fit):
    from fwsvd_core.errors import FwsvdError

    loaded = load_model(tiny_models["bert"], device="cpu")
    auto = estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)
    assert auto.form == "profiles" and "low-memory Fisher" in auto.notes[0] and "900 GiB" in auto.notes[0]
    again = estimate_fisher(loaded.model, loaded.tokenizer, sst2_small[0], n_examples=8)
    assert again.from_cache and again.form == "profiles"
    for name in auto.rows:
        torch.testing.assert_close(again.row_sums(name), auto.row_sums(name))
    with pytest.raises(FwsvdError, match="needs the element-wise Fisher"):
        auto.element_wise(next(iter(auto.rows)), "TFWSVD")
