import numpy as np
import pytest
from sklearn.metrics import matthews_corrcoef

from fwsvd_core.errors import Cancelled, LabelMappingError
from fwsvd_core.estimation.evaluation import evaluate, predict
from fwsvd_core.estimation.metrics import batched_metric, bootstrap_interval, compute_metrics
from fwsvd_core.inputs.data import load_glue_folder
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model


def test_predictions_equal_one_at_a_time_and_in_data_order(tiny_models, sst2_small):
    import torch

    loaded = load_model(tiny_models["bert"], device="cpu")
    data = sst2_small[1].sample(30, seed=0)
    batched = predict(loaded.model, loaded.tokenizer, data, batch_size=7)
    with torch.no_grad():
        single = [int(loaded.model(**loaded.tokenizer([t], return_tensors="pt")).logits.argmax()) for t in data.text_a]
    assert list(batched) == single


def test_metrics_and_subsample_interval(tiny_models, sst2_small):
    loaded = load_model(tiny_models["bert"], device="cpu")
    data = sst2_small[1]
    full = evaluate(loaded.model, loaded.tokenizer, data)
    assert full.n_examples == len(data) and full.interval is None
    part = evaluate(loaded.model, loaded.tokenizer, data, subsample=100, seed=1)
    assert part.n_examples == 100 and part.n_total == len(data)
    lo, hi = part.interval
    assert lo <= part.score <= hi and hi - lo > 0
    assert "95% CI" in part.describe()


def test_metric_values_against_sklearn_and_scipy():
    rng = np.random.default_rng(0)
    labels, preds = rng.integers(0, 2, 200), rng.integers(0, 2, 200)
    m = compute_metrics(get_task("cola"), preds, labels)
    assert m["mcc"] == pytest.approx(matthews_corrcoef(labels, preds))
    assert m["accuracy"] == pytest.approx(np.mean(labels == preds))
    y = rng.normal(size=100)
    stsb = compute_metrics(get_task("stsb"), y + rng.normal(size=100) * 0.1, y)
    assert stsb["pearson"] > 0.9 and stsb["spearman"] > 0.9
    assert compute_metrics(get_task("stsb"), np.zeros(100), y)["pearson"] == 0.0
    lo, hi = bootstrap_interval(get_task("sst2"), preds, labels)
    assert lo < np.mean(labels == preds) < hi


@pytest.mark.parametrize("name", ["accuracy", "f1", "mcc", "pearson", "spearman"])
def test_the_batched_metric_equals_the_metric_of_each_resample(name):
    rng = np.random.default_rng(3)
    if name in ("pearson", "spearman"):
        labels = np.round(rng.normal(size=60), 1)  # rounded: ties, which the ranks must average
        preds = labels + rng.normal(size=60)
    else:
        labels, preds = rng.integers(0, 2, 60), rng.integers(0, 2, 60)
    rows = rng.integers(0, 60, size=(50, 60))  # 50 bootstrap resamples
    batched = batched_metric(name, preds[rows], labels[rows])
    one_by_one = [compute_metrics_of(name, preds[r], labels[r]) for r in rows]
    np.testing.assert_allclose(batched, one_by_one, atol=1e-12)
    # degenerate resamples: one class only, a constant prediction
    ones = np.ones((1, 60), dtype=labels.dtype)
    np.testing.assert_allclose(batched_metric(name, ones, labels[None]), [compute_metrics_of(name, ones[0], labels)],
                               atol=1e-12)


def compute_metrics_of(name: str, preds: np.ndarray, labels: np.ndarray) -> float:
    """The reference: scikit-learn's (and scipy's) metric of one resample."""
    from scipy.stats import pearsonr, spearmanr
    from sklearn.metrics import f1_score

    if name == "accuracy":
        return float(np.mean(preds == labels))
    if name == "f1":
        return float(f1_score(labels, preds, zero_division=0.0))
    if name == "mcc":
        return float(matthews_corrcoef(labels, preds))
    if np.std(preds) == 0 or np.std(labels) == 0:
        return 0.0
    return float((pearsonr if name == "pearson" else spearmanr)(preds, labels)[0])


def test_regression_and_pair_tasks(minilm_dir, glue_dir):
    loaded = load_model(minilm_dir, num_labels=1, device="cpu")
    data = load_glue_folder(get_task("stsb"), glue_dir, "dev").sample(40)
    result = evaluate(loaded.model, loaded.tokenizer, data)
    assert set(result.metrics) == {"pearson", "spearman"} and -1 <= result.score <= 1


def test_cancel_and_label_mismatch(tiny_models, sst2_small, glue_dir):
    loaded = load_model(tiny_models["bert"], device="cpu")
    with pytest.raises(Cancelled):
        evaluate(loaded.model, loaded.tokenizer, sst2_small[1], cancel=lambda: True)
    mnli_like = load_glue_folder(get_task("stsb"), glue_dir, "dev").sample(5)
    with pytest.raises(LabelMappingError):
        evaluate(loaded.model, loaded.tokenizer, mnli_like)
