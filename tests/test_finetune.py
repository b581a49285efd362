import torch

from fwsvd_core.evaluation import evaluate
from fwsvd_core.finetune import finetune
from fwsvd_core.fisher import per_example_loss, task_targets
from fwsvd_core.models import load_model
from fwsvd_core.batching import collate, encode


def mean_loss(loaded, data):
    import numpy as np

    enc = encode(loaded.tokenizer, data, 128, loaded.model)
    batch = collate(loaded.tokenizer, enc, np.arange(len(data)), torch.device("cpu"))
    with torch.no_grad():
        return float(per_example_loss(loaded.model(**batch).logits, task_targets(data, loaded.model, np.arange(len(data))), False).mean())


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
