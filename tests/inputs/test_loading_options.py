"""Loading like the ecosystem: revision, token and device_map pass through to transformers."""
import pytest
import torch

from fwsvd_core.errors import ModelLoadError
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.estimation.fisher import compute_fisher
from fwsvd_core.inputs.models import load_pretrained
from fwsvd_core.loading import load_model


def test_revision_and_token_reach_every_from_pretrained(tiny_models, monkeypatch):
    import transformers

    seen = []
    for cls in (transformers.AutoConfig, transformers.AutoTokenizer, transformers.AutoModelForSequenceClassification):
        real = cls.from_pretrained.__func__

        def spy(klass, *args, _real=real, _name=cls.__name__, **kwargs):
            seen.append((_name, kwargs.get("revision"), kwargs.get("token")))
            return _real(klass, *args, **kwargs)
        monkeypatch.setattr(cls, "from_pretrained", classmethod(spy))
    loaded = load_pretrained(tiny_models["bert"], device="cpu", revision="v1.0", token="hf_secret")
    assert {name for name, *_ in seen} == {"AutoConfig", "AutoTokenizer", "AutoModelForSequenceClassification"}
    assert all((revision, token) == ("v1.0", "hf_secret") for _, revision, token in seen)
    assert loaded.source.endswith("at revision v1.0") and "hf_secret" not in loaded.source


def test_device_map_auto_places_the_layers_and_the_statistics_follow(tiny_models, sst2_small):
    plain = load_model(tiny_models["llama"], device="cpu")
    mapped = load_model(tiny_models["llama"], device_map="auto")
    assert any("device_map='auto'" in n for n in mapped.notes)  # one device here: accelerate keeps it whole
    data = sst2_small[0].sample(6, seed=2)
    ours, reference = (compute_fisher(m.model, m.tokenizer, data, batch_size=3) for m in (mapped, plain))
    for name, f in reference.per_layer.items():
        torch.testing.assert_close(ours.per_layer[name], f)
    dev = sst2_small[1].sample(20)
    assert evaluate(mapped.model, mapped.tokenizer, dev).score == evaluate(plain.model, plain.tokenizer, dev).score


def test_device_map_is_refused_for_demos_with_a_reason():
    with pytest.raises(ModelLoadError, match="device_map applies to saved models"):
        load_model("demo:sst2", device_map="auto")


def test_layers_offloaded_to_disk_give_the_same_fisher_factors_and_scores(tiny_models, sst2_small):
    """A device_map that sends the encoder to the disk: accelerate keeps those weights off the model; every stage
    reads them from where accelerate keeps them."""
    from fwsvd_core.compression.ranks import uniform_ranks
    from fwsvd_core.compression.session import CompressionSession

    device_map = {"bert.embeddings": "cpu", "bert.encoder": "disk", "bert.pooler": "cpu", "classifier": "cpu"}
    offloaded = load_model(tiny_models["bert"], device_map=device_map)
    plain = load_model(tiny_models["bert"], device="cpu")
    query = "bert.encoder.layer.0.attention.self.query"
    assert offloaded.model.get_submodule(query).weight.device.type == "meta"  # not in the model: on the disk
    data, dev = sst2_small[0].sample(6, seed=4), sst2_small[1].sample(24)
    ours, reference = (compute_fisher(m.model, m.tokenizer, data, batch_size=3) for m in (offloaded, plain))
    for name, f in reference.per_layer.items():
        torch.testing.assert_close(ours.per_layer[name], f)
    sessions = [CompressionSession(m, use_disk_cache=False) for m in (offloaded, plain)]
    for session, fisher in zip(sessions, (ours, reference), strict=True):
        session.set_fisher(fisher)
    ranks = uniform_ranks(sessions[0].layers, 0.25)
    scores = [evaluate(s.compress("fwsvd-input", ranks), s.loaded.tokenizer, dev).loss for s in sessions]
    assert scores[0] == pytest.approx(scores[1], rel=1e-5)
