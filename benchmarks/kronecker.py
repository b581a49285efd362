"""The Kronecker-factored methods on the built-in demos at one budget: damping, power iterations and allocators.

    python benchmarks/kronecker.py --out docs/kronecker_damping

Chooses the default damping (`fwsvd_core.compression.factorization.KRONECKER_DAMPING`) by measurement: every
damping, every Kronecker method (kfac, gfwsvd) with uniform ranks and with the spectral allocator, full dev sets,
no fine-tuning, at parameter ratio 0.227 of the compressible layers (rank ratio 0.15 on MiniLM), beside SVD,
the best FWSVD and SVD-LLM at the same budget.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd
from common import REPO, calibrate, markdown_table

from fwsvd_core.analysis.sweep import run_sweep
from fwsvd_core.compression.methods import KRONECKER, method_names
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.estimation.kronecker import DEFAULT_ITERATIONS
from fwsvd_core.inputs.families import load_task_data
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model

BASELINES = ["svd", "fwsvd-input", "fwsvd-output", "fwsvd-both", "svd-llm"]
KRONECKER_METHODS = list(method_names(needs=KRONECKER))


def write_report(out: Path, table: pd.DataFrame, command: str, settings: dict) -> None:
    lines = [f"# Kronecker-factored methods: damping and allocator at param ratio {settings['param ratio']}", "",
             f"Made by `{command}`. Fisher and Kronecker factors from {settings['fisher samples']} training examples "
             f"({settings['iterations']} power iterations from K-FAC), full dev sets, no fine-tuning. Damping is added "
             "to each factor relative to the mean of its diagonal.", ""]
    for task_name, part in table.groupby("task", sort=False):
        metric = part["metric"].iloc[0]
        pivot = part[part["method"].isin(KRONECKER_METHODS)].pivot_table(index="damping", columns=["method", "allocator"],
                                                                  values=metric)
        pivot.columns = [f"{m} / {a}" for m, a in pivot.columns]
        baselines = part[part["method"].isin(BASELINES)]
        dense = part[part["method"] == "dense"].iloc[0]
        lines += [f"## {task_name} ({metric})", "",
                  f"Dense {metric} {dense[metric]:.4f}. Kronecker factors: {dense['kronecker seconds']} s on this "
                  f"machine; largest change of a unit-norm A per power iteration: {dense['power-iteration change']}.",
                  "", markdown_table(pivot.round(4).reset_index().to_dict(orient="records")),
                  "", "Baselines at the same budget:", "",
                  markdown_table(baselines[["method", "allocator", metric]].round(4).to_dict(orient="records")), ""]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", default="sst2,stsb")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--param-ratio", type=float, default=0.227)
    p.add_argument("--dampings", default="0.0001,0.001,0.01,0.1,1")
    p.add_argument("--iterations", type=int, default=DEFAULT_ITERATIONS)
    p.add_argument("--fisher-samples", type=int, default=512)
    p.add_argument("--eval-subsample", type=int, default=None)
    p.add_argument("--out", default=str(REPO / "docs" / "kronecker_damping"))
    p.add_argument("--report-only", action="store_true", help="write the markdown again from the JSON")
    args = p.parse_args()
    out = Path(args.out)
    if args.report_only:
        saved = json.loads(out.with_suffix(".json").read_text())
        write_report(out, pd.DataFrame(saved["rows"]), saved["command"], saved["settings"])
        return 0
    command = " ".join(["python benchmarks/kronecker.py", *sys.argv[1:]])
    rows = []
    for task_name in args.tasks.split(","):
        task = get_task(task_name)
        loaded = load_model(f"demo:{task_name}", data_dir=args.data_dir)
        train = load_task_data(task, "train", "auto", args.data_dir)
        dev = load_task_data(task, "dev", "auto", args.data_dir)
        session = CompressionSession(loaded)
        factors = calibrate(session, train, args.fisher_samples, args.iterations)
        say = lambda t, name=task_name: print(f"[{name}] {t}", file=sys.stderr, flush=True)  # noqa: E731
        metric = task.primary_metric
        base = run_sweep(session, dev, BASELINES, param_ratios=[args.param_ratio], allocators=["uniform", "spectral"],
                         subsample=args.eval_subsample, report=say)
        dense = float(base.loc[base["method"] == "dense", metric].iloc[0])
        base = base[base["method"] != "dense"]
        for _, row in base.iterrows():
            rows.append({"task": task_name, "method": row["method"], "allocator": row["allocator"], "damping": "",
                         metric: row[metric], "metric": metric})
        for damping in (float(d) for d in args.dampings.split(",")):
            session.set_kronecker(factors, damping)
            swept = run_sweep(session, dev, KRONECKER_METHODS, param_ratios=[args.param_ratio],
                              allocators=["uniform", "spectral"], subsample=args.eval_subsample, report=say)
            for _, row in swept[swept["method"] != "dense"].iterrows():
                rows.append({"task": task_name, "method": row["method"], "allocator": row["allocator"],
                             "damping": damping, metric: row[metric], "metric": metric})
        rows.append({"task": task_name, "method": "dense", "allocator": "", "damping": "",
                     metric: dense, "metric": metric,
                     "kronecker seconds": round(factors.seconds, 1), "power-iteration change": factors.change})
    table = pd.DataFrame(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out.with_suffix(".csv"), index=False)
    settings = {"param ratio": args.param_ratio, "fisher samples": args.fisher_samples, "iterations": args.iterations}
    out.with_suffix(".json").write_text(json.dumps({"command": command, "settings": settings, "rows": rows}, indent=1,
                                                   default=str))
    write_report(out, table, command, settings)
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
