"""bf16 and fp16 checkpoints: every method compresses, runs, fine-tunes and exports, close to the float32 path."""
import pytest
import torch

from fwsvd_core.analysis.sweep import run_sweep
from fwsvd_core.compression.export import save_compressed
from fwsvd_core.compression.finetune import finetune_compressed
from fwsvd_core.compression.lowrank import LowRankLinear
from fwsvd_core.compression.methods import method_names
from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.errors import FwsvdError
from fwsvd_core.estimation.activations import estimate_activation_stats
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.estimation.kronecker import estimate_kronecker
from fwsvd_core.inputs.precision import as_dtype, float32_parameters, model_dtype
from fwsvd_core.loading import load_model

HALF = [torch.bfloat16, torch.float16]


def session_in(path, dtype, train):
    loaded = load_model(path, device="cpu", dtype=dtype)
    session = CompressionSession(loaded, use_disk_cache=False)
    session.tfwsvd_settings = {"max_iter": 5, "tol": 1e-4, "time_budget": 2.0}
    session.set_fisher(estimate_fisher(loaded.model, loaded.tokenizer, train, n_examples=8, use_cache=False))
    session.set_activations(estimate_activation_stats(loaded.model, loaded.tokenizer, train, 8, layers=session.layers,
                                                      use_cache=False))
    session.set_kronecker(estimate_kronecker(loaded.model, loaded.tokenizer, train, 8, iterations=2, use_cache=False))
    return session


def logits(model, tokenizer):
    batch = tokenizer(["a gripping, funny film", "dull and far too long"], return_tensors="pt", padding=True)
    if "token_type_ids" not in model.forward.__code__.co_varnames:
        batch.pop("token_type_ids", None)
    with torch.no_grad():
        return model(**batch).logits.float()


@pytest.mark.parametrize("arch", ["bert", "llama"])
@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
def test_every_method_compresses_a_half_precision_model_close_to_float32(arch, dtype, tiny_models, sst2_small):
    train = sst2_small[0]
    full, half = session_in(tiny_models[arch], torch.float32, train), session_in(tiny_models[arch], dtype, train)
    assert model_dtype(half.model) == dtype and model_dtype(full.model) == torch.float32
    assert all(f.dtype == torch.float32 for f in half.fisher.per_layer.values())  # accumulated in float32
    tokenizer = half.loaded.tokenizer
    ranks = uniform_ranks(half.layers, 0.5)
    for method in method_names():
        compressed = half.compress(method, ranks)
        stored = [p.dtype for m in compressed.modules() if isinstance(m, LowRankLinear) for p in m.parameters()]
        assert stored and set(stored) == {dtype}, method
        out, reference = logits(compressed, tokenizer), logits(full.compress(method, ranks), tokenizer)
        assert torch.isfinite(out).all(), method
        # half precision keeps about 3 significant digits through two layers; the float32 path is the reference
        assert (out - reference).abs().max() <= 0.03 * reference.abs().max() + 1e-3, (method, out, reference)


@pytest.mark.parametrize("dtype", HALF, ids=["bf16", "fp16"])
def test_a_half_precision_compressed_model_fine_tunes_and_exports_in_its_dtype(dtype, tiny_models, sst2_small, tmp_path):
    half = session_in(tiny_models["llama"], dtype, sst2_small[0])
    compressed = half.compress("fwsvd-input", uniform_ranks(half.layers, 0.25))
    tuned, result = finetune_compressed(compressed, half.loaded.tokenizer, sst2_small[0], steps=3, lr=1e-3)
    assert model_dtype(tuned) == dtype and all(p.dtype == dtype for p in tuned.parameters() if p.is_floating_point())
    assert result.steps == 3 and torch.isfinite(torch.tensor([result.first_loss, result.last_loss])).all()
    name = half.layers[0].name
    assert not torch.equal(tuned.get_submodule(name).left, compressed.get_submodule(name).left)  # it learned
    out = save_compressed(tuned, half.loaded.tokenizer, tmp_path / "export")
    back = load_model(out, device="cpu")
    assert model_dtype(back.model) == dtype
    torch.testing.assert_close(logits(back.model, back.tokenizer),
                               logits(tuned, half.loaded.tokenizer), rtol=0, atol=0)
    assert model_dtype(load_model(out, device="cpu", dtype="float32").model) == torch.float32


def test_float32_training_copies_are_rounded_back_and_buffers_left_alone():
    layer = torch.nn.Linear(4, 3).to(torch.bfloat16)
    layer.register_buffer("table", torch.arange(3.0))
    with float32_parameters(layer):
        assert layer.weight.dtype == torch.float32 and layer.table.dtype == torch.float32
        layer.weight.data += 1e-3  # an update bf16 could not hold on its own
    assert layer.weight.dtype == torch.bfloat16 and layer.bias.dtype == torch.bfloat16


def test_dtype_names_are_checked():
    assert as_dtype("auto") is None and as_dtype("bfloat16") == torch.bfloat16 and as_dtype("torch.float16") == torch.float16
    for wrong in ("int8", "float17", "half precision"):
        with pytest.raises(FwsvdError, match="auto, float32, bfloat16, float16"):
            as_dtype(wrong)


def test_the_sweep_reports_what_the_dtype_alone_costs(tiny_models, sst2_small):
    half = session_in(tiny_models["bert"], torch.bfloat16, sst2_small[0])
    table = run_sweep(half, sst2_small[1].sample(40), ["svd"], rank_ratios=[0.5])
    dense = table[table["method"] == "dense"]
    assert list(dense["dtype"]) == ["bfloat16", "float32"] and set(table["dtype"]) == {"bfloat16", "float32"}
    full = load_model(tiny_models["bert"], device="cpu")
    from fwsvd_core.estimation.evaluation import evaluate

    assert dense["accuracy"].iloc[1] == pytest.approx(evaluate(full.model, full.tokenizer, sst2_small[1].sample(40)).score,
                                                      abs=1e-4)
