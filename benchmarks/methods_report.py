"""Task score per method, TFWSVD solver and rank allocator at several parameter budgets; writes JSON
and a markdown report. (The predictor of SVD failure has its own report: `python -m fwsvd_core predictor`.)

    python benchmarks/methods_report.py --model demo:sst2 --task sst2 --data-dir ../shared/data/glue --out docs/methods_sst2
    python benchmarks/methods_report.py --quick ...   # a tiny run, as CI does, so the script does not rot
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import pandas as pd
from common import calibrate, markdown_table

from fwsvd_core.analysis.sweep import allocation_gains, run_sweep
from fwsvd_core.compression.methods import method_names
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.estimation.kronecker import DEFAULT_ITERATIONS
from fwsvd_core.inputs.families import load_task_data
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model

# (methods, allocators), every registered method included: the iterative ones (TFWSVD) solve each layer at each
# rank, so they run with uniform ranks only
PLAN = [
    (list(method_names(per_rank=False)), ["uniform", "spectral"]),
    (["fwsvd-input", "fwsvd-output"], ["sensitivity"]),
    (list(method_names(per_rank=True)), ["uniform"]),
]


def markdown(table: pd.DataFrame) -> str:
    return markdown_table(table.to_dict(orient="records"))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="demo:sst2")
    p.add_argument("--task", default="sst2")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--budgets", default="0.3,0.5")
    p.add_argument("--fisher-samples", type=int, default=512)
    p.add_argument("--eval-subsample", type=int, default=None)
    p.add_argument("--solver-iters", type=int, default=10)
    p.add_argument("--solver-seconds", type=float, default=1.0)
    p.add_argument("--quick", action="store_true", help="tiny settings, for CI")
    p.add_argument("--out", default="docs/methods")
    args = p.parse_args()
    if args.quick:
        args.fisher_samples, args.eval_subsample, args.solver_iters = 16, 32, 2
    start = time.perf_counter()
    task = get_task(args.task)
    loaded = load_model(args.model)
    train = load_task_data(task, "train", "auto", args.data_dir)
    dev = load_task_data(task, "dev", "auto", args.data_dir)
    session = CompressionSession(loaded)
    session.tfwsvd_settings = {"max_iter": args.solver_iters, "tol": 1e-4, "time_budget": args.solver_seconds}
    calibrate(session, train, args.fisher_samples, 1 if args.quick else DEFAULT_ITERATIONS)
    budgets = [float(b) for b in args.budgets.split(",")]
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    parts = [run_sweep(session, dev, methods, param_ratios=budgets, allocators=allocators, subsample=args.eval_subsample,
                       train_data=train, report=say) for methods, allocators in PLAN]
    dense = parts[0].iloc[[0]]
    table = pd.concat([dense] + [p.iloc[1:] for p in parts], ignore_index=True)
    metric = task.primary_metric
    keep = ["method", "allocator", "target param ratio", "param ratio (layers)", "param ratio (model)", metric, "loss",
            "plain error", "fisher error"]
    table = table[[c for c in keep if c in table.columns]]
    gains = allocation_gains(table, metric).to_dict(orient="records")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"model": loaded.source, "task": task.name, "eval data": dev.source, "fisher": f"{session.fisher.n_examples} "
            f"examples of {train.split}, per-sample", "eval subsample": args.eval_subsample, "budgets": budgets,
            "tfwsvd": session.tfwsvd_settings, "seconds": round(time.perf_counter() - start, 1)}
    out.with_suffix(".json").write_text(json.dumps({**meta, "rows": table.to_dict(orient="records"), "gains": gains},
                                                   indent=1, default=str))
    text = [f"# Methods, solvers and allocators: {loaded.source} on {task.name}", "",
            "Made by `python benchmarks/methods_report.py " + " ".join(sys.argv[1:]) + "`", "",
            f"Scored on {dev.source} ({args.eval_subsample or len(dev)} examples); Fisher and calibration from the "
            f"training split. Budgets are parameter ratios (kept / original weights of the compressible layers).", "",
            markdown(table.round(4)), "", "## Best allocator against uniform-ratio FWSVD at the same budget", "",
            markdown(pd.DataFrame(gains).round(4)) if gains else "(none)", "",
            "The predictor of SVD failure is validated by `python -m fwsvd_core predictor` (docs/predictor_*.md).",
            "", f"Total time {meta['seconds']} s."]
    out.with_suffix(".md").write_text("\n".join(text) + "\n")
    print("\n".join(text))
    return 0


if __name__ == "__main__":
    sys.exit(main())
