import re
import time

import pytest

from fwsvd_core.errors import ModelLoadError
from fwsvd_core.inputs.models import model_fingerprint
from fwsvd_core.loading import load_model


def test_local_directory_loads_in_eval_mode_with_a_pad_token(tiny_models):
    for arch in ("gpt2", "llama", "bert"):
        loaded = load_model(tiny_models[arch], device="cpu")
        assert not loaded.model.training and loaded.tokenizer.pad_token is not None
        assert loaded.model.config.pad_token_id is not None and loaded.source.startswith("local directory")


def test_unknown_hub_id_offline_fails_fast_naming_local_options(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match=r"offline mode is set.*demo:sst2"):
        load_model("someone/not-a-model")
    assert time.perf_counter() - start < 5


def test_unreachable_hub_fails_fast(monkeypatch):
    from fwsvd_core.inputs import hub

    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setattr(hub, "_probe", lambda timeout: False)
    start = time.perf_counter()
    with pytest.raises(ModelLoadError, match="cannot be reached"):
        load_model("someone/not-a-model")
    assert time.perf_counter() - start < 5


def test_bad_paths(tmp_path):
    with pytest.raises(ModelLoadError, match=re.escape("no config.json")):
        load_model(tmp_path)
    (tmp_path / "f.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_model(tmp_path / "f.bin")
    with pytest.raises(ModelLoadError, match="No such directory"):
        load_model("./nowhere")


def test_fingerprint_changes_with_any_weight(tiny_models):
    import torch

    loaded = load_model(tiny_models["bert"], device="cpu")
    before = model_fingerprint(loaded.model, loaded.tokenizer)
    assert before == loaded.fingerprint != model_fingerprint(loaded.model)  # the tokenizer is part of it
    with torch.no_grad():
        loaded.model.classifier.bias[0] += 1e-3
    assert model_fingerprint(loaded.model, loaded.tokenizer) != before


def test_tokenizer_fingerprint_ignores_the_state_a_call_leaves(tiny_models):
    from fwsvd_core.inputs.models import tokenizer_fingerprint

    tokenizer = load_model(tiny_models["bert"], device="cpu").tokenizer
    before = tokenizer_fingerprint(tokenizer)
    tokenizer(["a text"], truncation=True, max_length=7, padding="max_length")
    assert tokenizer_fingerprint(tokenizer) == before
