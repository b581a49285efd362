"""Work that installs hooks or flips flags on one shared model runs one at a time (two users, one model)."""
import threading

import torch

from fwsvd_core.estimation.activations import collect_activation_stats
from fwsvd_core.estimation.evaluation import predict
from fwsvd_core.estimation.fisher import estimate_fisher
from fwsvd_core.inputs.exclusive import model_lock
from fwsvd_core.loading import load_model


def flags(model):
    return model.training, [p.requires_grad for p in model.parameters()]


def test_two_fisher_runs_at_once_on_one_model_give_the_lone_results_and_leave_its_flags(tiny_models, sst2_small):
    loaded = load_model(tiny_models["bert"], device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    train, dev = sst2_small
    model.train()  # flags a user might have set, which every pass must give back as they were
    for p in model.bert.embeddings.parameters():
        p.requires_grad_(False)
    before = flags(model)
    sizes = (24, 40)
    alone = {n: estimate_fisher(model, tokenizer, train, n, batch_size=4, use_cache=False) for n in sizes}
    predictions = predict(model, tokenizer, dev, batch_size=8)
    assert flags(model) == before

    start, results, errors = threading.Barrier(4), {}, []

    def run(name, work):
        start.wait()
        try:
            for _ in range(2):
                results[name] = work()
        except Exception as exc:  # the failure is what the test reports
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    works = {**{n: (lambda n=n: estimate_fisher(model, tokenizer, train, n, batch_size=4, use_cache=False))
                for n in sizes},
             "predict": lambda: predict(model, tokenizer, dev, batch_size=8),
             "activations": lambda: collect_activation_stats(model, tokenizer, train.sample(16, seed=0), batch_size=4)}
    threads = [threading.Thread(target=run, args=item) for item in works.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == []
    for n in sizes:
        for name, reference in alone[n].per_layer.items():
            torch.testing.assert_close(results[n].per_layer[name], reference, rtol=1e-5, atol=0)
    assert (results["predict"] == predictions).all()
    assert flags(model) == before


def test_one_lock_per_model_reentrant_on_its_thread(tiny_models):
    a = load_model(tiny_models["bert"], device="cpu").model
    b = load_model(tiny_models["bert"], device="cpu").model
    assert model_lock(a) is model_lock(a) and model_lock(a) is not model_lock(b)
    with model_lock(a), model_lock(a):  # a pass that calls another on the same model
        pass
