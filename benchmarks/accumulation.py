"""Float32 against float64 running sums of the K-FAC Gram matrices: how far the factors and the factorized layers move,
beside the calibration sample's own noise, and what the memory saved buys a 7B decoder on this machine.

    python benchmarks/accumulation.py --data-dir ../shared/data/glue
    python benchmarks/accumulation.py --quick --data-dir ../shared/data/glue --out /tmp/acc   # as the tests run it

Each batch's Gram matrix is a float32 product either way; only the sum over batches differs. One window per batch, so
the sums take one addition per window (256 windows: the LLM papers' calibration size). The noise floor is the
difference between the factors of two disjoint halves of the windows.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch
from common import REPO, device_description, write_report

from fwsvd_core.compression.factorization import KRONECKER_DAMPING, kronecker_svd
from fwsvd_core.errors import InsufficientMemoryError
from fwsvd_core.estimation import kronecker
from fwsvd_core.estimation.kronecker import compute_kronecker, kronecker_estimate
from fwsvd_core.estimation.passes import STATISTICS_SHARE, plan_passes
from fwsvd_core.inputs.families import load_task_data
from fwsvd_core.inputs.families.causal_lm import windows
from fwsvd_core.inputs.layers import require_layers
from fwsvd_core.inputs.memory import available_bytes, format_bytes
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.double() - b.double()).norm() / (b.double().norm() or 1.0))


def factors_with(dtype: torch.dtype, *args, **kwargs) -> kronecker.KroneckerFactors:
    saved = kronecker.ACCUMULATION
    kronecker.ACCUMULATION = dtype
    try:
        return compute_kronecker(*args, **kwargs)
    finally:
        kronecker.ACCUMULATION = saved


def seven_b_passes(dtype: torch.dtype) -> str:
    """The planner's passes for LLaMA-7B's K-FAC statistics beside its bf16 weights on this machine."""
    import transformers as tf

    with torch.device("meta"):
        model = tf.AutoModelForCausalLM.from_config(tf.LlamaConfig(), dtype=torch.bfloat16)
    layers = require_layers(model)
    model_bytes = 2 * sum(p.numel() for p in model.parameters())
    budget = int(STATISTICS_SHARE * max(available_bytes("cpu") - model_bytes, 0))
    saved = kronecker.ACCUMULATION
    kronecker.ACCUMULATION = dtype
    try:
        one_block = kronecker_estimate([l for l in layers if l.block == 0], 0).total
        passes = str(plan_passes(layers, lambda g: kronecker_estimate(g, 0).total, budget).passes)
    except InsufficientMemoryError:
        passes = "no"
    finally:
        kronecker.ACCUMULATION = saved
    return f"{passes} passes (one block's statistics: {format_bytes(one_block)}; budget {format_bytes(budget)})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="demo:lm")
    parser.add_argument("--windows", type=int, default=256)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "accumulation"))
    args = parser.parse_args(argv)
    if args.quick:
        args.windows, args.seq_len = 8, 16
    loaded = load_model(args.model, device="cpu")
    model, tokenizer = loaded.model, loaded.tokenizer
    text = load_task_data(get_task("wikitext2"), "train", "glue" if args.data_dir else "auto", args.data_dir)
    data = windows(tokenizer, text, args.seq_len).sample(args.windows, seed=0)
    run = {"iterations": 0, "batch_size": 1, "max_length": args.seq_len}
    wide = factors_with(torch.float64, model, tokenizer, data, **run)
    narrow = factors_with(torch.float32, model, tokenizer, data, **run)
    half = len(data) // 2
    first = factors_with(torch.float64, model, tokenizer, data.subset(list(range(half))), **run)
    second = factors_with(torch.float64, model, tokenizer, data.subset(list(range(half, len(data)))), **run)
    rows = []
    for layer in require_layers(model):
        (a64, b64), (a32, b32) = wide.pair(layer.name, "kfac"), narrow.pair(layer.name, "kfac")
        weight = model.get_submodule(layer.name).weight.detach().float()
        rank = min(weight.shape) // 2
        f64 = kronecker_svd(weight, a64, b64, "kfac", KRONECKER_DAMPING)
        f32 = kronecker_svd(weight, a32, b32, "kfac", KRONECKER_DAMPING)
        w64 = f64.left[:, :rank] @ f64.right[:rank]
        w32 = f32.left[:, :rank] @ f32.right[:rank]
        rows.append({"layer": layer.name, "A float32 vs float64": relative(a32, a64),
                     "B float32 vs float64": relative(b32, b64),
                     "A half vs half (noise)": relative(first.pair(layer.name, "kfac")[0],
                                                        second.pair(layer.name, "kfac")[0]),
                     "B half vs half (noise)": relative(first.pair(layer.name, "kfac")[1],
                                                        second.pair(layer.name, "kfac")[1]),
                     "rank-r layer moved, of its compression error": relative(w32, w64) * float(
                         w64.double().norm() / (w64.double() - weight.double()).norm())})
    columns = [c for c in rows[0] if c != "layer"]
    summary = [{"quantity": c, "median": f"{statistics.median(r[c] for r in rows):.2e}",
                "largest": f"{max(r[c] for r in rows):.2e}"} for c in columns]
    memory = [{"running sums": name, "LLaMA-7B K-FAC statistics on this machine": seven_b_passes(dtype)}
              for name, dtype in (("float64", torch.float64), ("float32", torch.float32))]
    for row in rows:
        for c in columns:
            row[c] = f"{row[c]:.2e}"
    command = "python benchmarks/accumulation.py " + " ".join(sys.argv[1:] if argv is None else argv)
    notes = [f"Model: {args.model} ({len(rows)} compressible layers); {len(data)} windows of {args.seq_len} tokens of "
             f"{data.source}, one per batch, so {len(data)} additions per sum. Device: {device_description('cpu')}. "
             "Differences are relative Frobenius norms. 'half vs half' compares the float64 factors of the first and "
             "the second half of the windows: the calibration sample's own noise. The last column is how far a "
             "layer's kfac factorization at half its full rank moves, relative to how far that factorization is "
             "from the dense layer."]
    write_report(Path(args.out), "Float32 against float64 running sums of the K-FAC Gram matrices", command,
                 {"Summary": summary, "Memory": memory, "Every layer": rows}, notes,
                 {"summary": summary, "memory": memory, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
