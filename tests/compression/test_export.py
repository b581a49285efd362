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
