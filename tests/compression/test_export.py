import json

import pytest
import torch
from conftest import ARCHITECTURES

from fwsvd_core.compression.export import load_compressed, save_compressed
from fwsvd_core.compression.ranks import count_params, uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.errors import ModelLoadError
from fwsvd_core.loading import load_model


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_saved_model_loads_back_with_equal_outputs(arch, tiny_models, tmp_path):
    loaded = load_model(tiny_models[arch], device="cpu")
    session = CompressionSession(loaded)
    ranks = uniform_ranks(session.layers, 0.2)
    ranks[session.layers[0].name] = session.layers[0].max_rank - 1  # one dense-stored layer too
    compressed = session.compress("svd", ranks)
    out = save_compressed(compressed, loaded.tokenizer, tmp_path / "c")
    table = json.loads((out / "config.json").read_text())["fwsvd_compression"]
    assert table["layers"][session.layers[1].name]["rank"] == ranks[session.layers[1].name]
    back = load_model(out, device="cpu")  # load_model recognises a compressed folder
    assert count_params(back.model) == count_params(compressed)
    x = loaded.tokenizer(["the tool works", "rather well"], return_tensors="pt", padding=True)
    if arch == "distilbert":
        x.pop("token_type_ids")
    with torch.no_grad():
        torch.testing.assert_close(back.model(**x).logits, compressed(**x).logits, rtol=1e-5, atol=1e-6)


def test_plain_models_cannot_be_saved_as_compressed(tiny_models, tmp_path):
    loaded = load_model(tiny_models["bert"], device="cpu")
    with pytest.raises(ModelLoadError, match="no rank table"):
        save_compressed(loaded.model, loaded.tokenizer, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(ModelLoadError, match="holds no compressed model"):
        load_compressed(tiny_models["bert"])


PLAIN_TRANSFORMERS = """
import json, sys, torch
from transformers import AutoModelForSequenceClassification
ids = torch.tensor(json.loads(sys.argv[2]))
out = {}
for folder, trust in json.loads(sys.argv[1]):
    try:
        model = AutoModelForSequenceClassification.from_pretrained(folder, trust_remote_code=trust)
    except Exception as exc:
        out[f"{folder} {trust}"] = {"error": f"{type(exc).__name__}: {exc}"}
        continue
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
    out[f"{folder} {trust}"] = {"class": type(model).__name__, "logits": logits.float().tolist(),
                                "dtype": str(next(model.parameters()).dtype),
                                "params": sum(p.numel() for p in model.parameters())}
print(json.dumps(out))
"""


@pytest.mark.slow  # a separate Python process loading 18 exports
def test_plain_transformers_loads_every_export_factorized_with_its_code_or_merged_without(tiny_models, tmp_path):
    """The factorized export loads with trust_remote_code=True (and only with it); the merged one loads anywhere."""
    import os
    import subprocess
    import sys

    ids = [[101, 2023, 3185, 2003, 2307, 102]]
    cases, expected = [], {}
    for arch, dtype in [*((a, None) for a in ARCHITECTURES), ("llama", "bfloat16")]:
        loaded = load_model(tiny_models[arch], device="cpu", dtype=dtype)
        session = CompressionSession(loaded, use_disk_cache=False)
        ranks = uniform_ranks(session.layers, 0.25)
        ranks[session.layers[0].name] = session.layers[0].max_rank - 1  # stored dense
        compressed = session.compress("svd", ranks)
        with torch.no_grad():
            logits = compressed(input_ids=torch.tensor(ids), attention_mask=torch.ones(1, len(ids[0]), dtype=torch.long)).logits
        for merge in (False, True):
            folder = save_compressed(compressed, loaded.tokenizer, tmp_path / f"{arch}-{dtype}-{merge}", merge=merge)
            expected[str(folder)] = (logits.float(), str(logits.dtype), count_params(loaded.model if merge else compressed))
            cases += [(str(folder), not merge)] + ([(str(folder), False)] if not merge else [])
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", PLAIN_TRANSFORMERS, json.dumps(cases), json.dumps(ids)],
                          capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for folder, trust in cases:
        result = results[f"{folder} {trust}"]
        merged = folder.endswith("True")
        if not merged and not trust:  # refused loudly, not loaded with random layers
            assert "trust_remote_code" in result["error"], result
            continue
        logits, dtype, params = expected[folder]
        assert "error" not in result, result
        assert result["class"].startswith("Fwsvd") != merged and result["dtype"] == dtype and result["params"] == params
        # the merged layers are rank-r products rounded once to the model's dtype
        tolerance = 1e-5 if not merged else 1e-4 if dtype == "torch.float32" else 2e-2
        torch.testing.assert_close(torch.tensor(result["logits"]), logits, rtol=0, atol=tolerance)


def test_every_export_carries_a_model_card(tiny_models, tmp_path):
    loaded = load_model(tiny_models["bert"], device="cpu")
    session = CompressionSession(loaded, use_disk_cache=False)
    ranks = uniform_ranks(session.layers, 0.25)
    extra = {"source": "tiny bert", "task": "sst2", "fisher": {"estimator": "per-sample", "examples": 8, "skipped": 1},
             "scores": {"dense": {"accuracy": 0.9}, "svd": {"accuracy": 0.85}}, "eval data": "SST-2 dev",
             "command": "python -m fwsvd_core compress --model tiny"}
    compressed = session.compress("svd", ranks)
    card = (save_compressed(compressed, loaded.tokenizer, tmp_path / "c", extra) / "README.md").read_text()
    kept = sum(r * (l.in_features + l.out_features) for l, r in ((l, ranks[l.name]) for l in session.layers))
    original = sum(l.in_features * l.out_features for l in session.layers)
    assert "- Base model: tiny bert" in card and "- Method: svd" in card and "8 training examples (1 skipped" in card
    assert f"{kept:,} of {original:,} (parameter ratio {kept / original:.3f})" in card
    assert f"{count_params(compressed):,} of {count_params(loaded.model):,}" in card
    assert "| svd | 0.8500 |" in card and "python -m fwsvd_core compress --model tiny" in card
    assert all(f"| {l.name} | {l.out_features} x {l.in_features} | {ranks[l.name]} | lowrank |" in card for l in session.layers)
    merged = (save_compressed(compressed, loaded.tokenizer, tmp_path / "m", extra, merge=True) / "README.md").read_text()
    assert "saves no parameters" in merged and "trust_remote_code" not in merged
