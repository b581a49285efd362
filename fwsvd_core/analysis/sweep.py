"""Task score, parameters and reconstruction error per method and ratio: the table behind the SVD mismatch."""
from __future__ import annotations

import copy
from collections.abc import Callable

import pandas as pd
import torch
from torch import nn

from fwsvd_core.compression.allocation import allocate, needs_calibration
from fwsvd_core.compression.finetune import finetune_compressed
from fwsvd_core.compression.ranks import (
    RankMap,
    count_params,
    ranks_for_param_ratio,
    summarize,
    uniform_ranks,
)
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.errors import InsufficientMemoryError
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.inputs.batching import CancelFn
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.families import higher_is_better, improvement
from fwsvd_core.inputs.memory import MemoryEstimate, require_fits
from fwsvd_core.inputs.precision import dtype_name, model_dtype


def ranks_for(session: CompressionSession, rank_ratio: float | None = None, param_ratio: float | None = None) -> RankMap:
    """Uniform ranks from a rank ratio, or the largest uniform ranks within a parameter ratio."""
    if rank_ratio is not None and param_ratio is None:
        return uniform_ranks(session.layers, rank_ratio)
    if param_ratio is not None and rank_ratio is None:
        return ranks_for_param_ratio(session.layers, param_ratio)[0]
    raise ValueError("Give exactly one of rank_ratio and param_ratio.")


def same_split_warning(fisher_data: TaskData, eval_data: TaskData) -> str | None:
    """Calibrating on the split that is scored flatters the weighted methods: say so."""
    if fisher_data.source == eval_data.source and fisher_data.split == eval_data.split:
        return (f"The Fisher was estimated on the same split that is scored ({eval_data.split}); "
                "scores of the Fisher-weighted methods are optimistic.")
    return None


def run_sweep(
    session: CompressionSession, eval_data: TaskData, methods: list[str],
    rank_ratios: list[float] | None = None, param_ratios: list[float] | None = None,
    allocators: list[str] | None = None, batch_size: int = 64, max_length: int = 128, subsample: int | None = None,
    report: Callable[[str], None] | None = None, cancel: CancelFn | None = None,
    train_data: TaskData | None = None, finetune_steps: int = 0, finetune_lr: float = 5e-5,
) -> pd.DataFrame:
    """One row for the dense model, then one per method and target.

    Rank ratios give uniform ranks; each parameter ratio is met by each of `allocators` (default uniform).
    With `finetune_steps`, each compressed model is also fine-tuned on `train_data` and scored again, in
    a row of its own (method name + "+ft"). `train_data` is also the sensitivity allocator's calibration set.
    """
    if (finetune_steps or any(needs_calibration(a) for a in allocators or [])) and train_data is None:
        raise ValueError("Fine-tuning after compression and the sensitivity allocators need training data.")
    if not methods:
        raise ValueError("Choose at least one method.")
    model_params = count_params(session.model)
    say = report or (lambda text: None)
    rows = []

    def score_row(method: str, model, ranks: RankMap, errors: dict[str, float], label: str) -> dict:
        result = evaluate(model, session.loaded.tokenizer, eval_data, batch_size, max_length, subsample, cancel=cancel)
        summary = summarize(model_params, session.layers, ranks)
        row = {
            "method": method, "mean rank ratio": round(summary.mean_rank_ratio, 4),
            "param ratio (layers)": round(summary.compressible_param_ratio, 4),
            "param ratio (model)": round(summary.param_ratio, 4), "params": summary.model_params_after,
            **{k: round(v, 4) for k, v in result.metrics.items()}, "loss": round(result.loss, 4),
            "plain error": round(errors["plain"], 4), "fisher error": round(errors["fisher"], 4),
        }
        if result.interval is not None:
            row["ci low"], row["ci high"] = (round(v, 4) for v in result.interval)
        say(f"{method:>13} {label}: {result.describe()}")
        return row

    full, exact = {l.name: l.max_rank for l in session.layers}, {"plain": 0.0, "fisher": 0.0}
    dtype = model_dtype(session.model)
    rows.append({"rank ratio": 1.0, "dtype": dtype_name(dtype), **score_row("dense", session.model, full, exact, "full rank")})
    if dtype != torch.float32:
        # what the stored precision alone costs, beside what compression costs
        reference = float32_copy(session.model, say)
        if reference is not None:
            rows.append({"rank ratio": 1.0, "dtype": "float32",
                         **score_row("dense", reference, full, exact, "full rank, float32 copy")})
            del reference
    targets = [({"rank ratio": r, "allocator": "uniform"}, "rank", r) for r in rank_ratios or []]
    targets += [({"target param ratio": p, "allocator": a}, a, p) for p in param_ratios or [] for a in allocators or ["uniform"]]
    for method in methods:
        for meta, kind, value in targets:
            if kind == "rank":
                ranks = ranks_for(session, rank_ratio=value)
            else:
                ranks = allocate(session, kind, value, method, calibration=train_data, cancel=cancel)
            compressed = session.compress(method, ranks)
            errors = session.model_errors(method, ranks)
            label = f"{kind} ratio {value}" if kind == "rank" else f"{kind} allocation, param ratio {value}"
            row = {**meta, "dtype": dtype_name(dtype), **score_row(method, compressed, ranks, errors, label)}
            rows.append(row)
            if finetune_steps:
                if train_data is None:
                    raise ValueError("Fine-tuning after compression needs the training data (train_data).")
                tuned, _ = finetune_compressed(compressed, session.loaded.tokenizer, train_data, finetune_steps,
                                               lr=finetune_lr, max_length=max_length, cancel=cancel)
                tuned_row = score_row(f"{method}+ft", tuned, ranks, errors, f"{label}, {finetune_steps} fine-tuning steps")
                rows.append({**row, **tuned_row, "finetune steps": finetune_steps})
    return pd.DataFrame(rows)


def float32_copy(model: nn.Module, say: Callable[[str], None]) -> nn.Module | None:
    """A float32 copy of a half-precision model, or None (said why) when it would not fit in memory."""
    copy_size = MemoryEstimate("a float32 copy of the model", {"weights": sum(p.numel() for p in model.parameters()) * 4})
    try:
        require_fits(copy_size, next(model.parameters()).device)
    except InsufficientMemoryError as exc:
        say(f"no float32 reference score: {str(exc).splitlines()[0]}")
        return None
    return copy.deepcopy(model).float()


def allocation_gains(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per budget: the best automatic allocation (any method) against the best uniform-ratio FWSVD variant, "best"
    and the gain in the metric's own direction (a lower perplexity is a gain).

    Rows whose method ends in "+ft" (fine-tuned after compression) are left out of both sides.
    """
    up = higher_is_better(metric)
    plain = table[~table["method"].str.endswith("+ft")]
    rows = []
    for budget, part in plain.groupby("target param ratio"):
        uniform = part[(part["allocator"] == "uniform") & part["method"].str.startswith("fwsvd")]
        allocated = part[~part["allocator"].isin(["uniform"])]
        if uniform.empty or allocated.empty:
            continue
        best = allocated.loc[allocated[metric].idxmax() if up else allocated[metric].idxmin()]
        base = float(uniform[metric].max() if up else uniform[metric].min())
        rows.append({"param ratio": budget, "best uniform FWSVD": round(base, 4),
                     "best allocation": f"{best['method']} / {best['allocator']}", "its score": round(float(best[metric]), 4),
                     "gain": round(improvement(metric, base, float(best[metric])), 4)})
    return pd.DataFrame(rows)
