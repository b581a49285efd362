import torch

from fwsvd_core.compression.finetune import finetune
from fwsvd_core.estimation.losses import per_example_loss, task_targets
from fwsvd_core.inputs.batching import collate
from fwsvd_core.inputs.families import encode
from fwsvd_core.loading import load_model


def mean_loss(loaded, data):
    import numpy as np

    enc = encode(loaded.tokenizer, data, 128, loaded.model)
    batch = collate(loaded.tokenizer, enc, np.arange(len(data)), torch.device("cpu"))
    with torch.no_grad():
        targets = task_targets(data, loaded.model, np.arange(len(data)))
        return float(per_example_loss(loaded.model(**batch).logits, targets, False).mean())


def test_finetune_lowers_the_loss_and_is_seeded(tiny_models, sst2_small):
    data = sst2_small[0].sample(64, seed=0)
    runs = []
    for _ in range(2):
        loaded = load_model(tiny_models["bert"], device="cpu")
        before = mean_loss(loaded, data)
        result = finetune(loaded.model, loaded.tokenizer, data, epochs=4, lr=1e-3, batch_size=16, seed=3)
        runs.append(mean_loss(loaded, data))
        assert result.steps == 16 and runs[-1] < before
    assert runs[0] == runs[1]


def test_finetuning_a_compressed_model_trains_its_factors_and_leaves_the_base_alone(tiny_models, sst2_small):
    from fwsvd_core.compression.finetune import finetune_compressed
    from fwsvd_core.compression.lowrank import LowRankLinear
    from fwsvd_core.compression.ranks import uniform_ranks
    from fwsvd_core.compression.session import CompressionSession

    data = sst2_small[0].sample(64, seed=0)
    loaded = load_model(tiny_models["bert"], device="cpu")
    base = {k: v.clone() for k, v in loaded.model.state_dict().items()}
    session = CompressionSession(loaded)
    compressed = session.compress("svd", uniform_ranks(session.layers, 0.15))
    view = {k: v.clone() for k, v in compressed.state_dict().items()}

    class Wrapped:  # mean_loss needs .model and .tokenizer
        def __init__(self, model):
            self.model, self.tokenizer = model, loaded.tokenizer

    before = mean_loss(Wrapped(compressed), data)
    tuned, result = finetune_compressed(compressed, loaded.tokenizer, data, steps=12, lr=1e-3, batch_size=16,
                                        factors_only=True)
    assert result.steps == 12 and mean_loss(Wrapped(tuned), data) < before
    low = next(m for m in tuned.modules() if isinstance(m, LowRankLinear))
    name = next(n for n, m in tuned.named_modules() if m is low)
    assert not torch.equal(low.left, view[f"{name}.up.weight"])  # the factors moved
    assert torch.equal(tuned.bert.embeddings.word_embeddings.weight, base["bert.embeddings.word_embeddings.weight"])
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, base[k])
    for k, v in compressed.state_dict().items():
        assert torch.equal(v, view[k])
