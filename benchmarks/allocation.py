"""The exact (integer-program) allocator against the greedy one on a 7B decoder's 224 layers: time, predicted loss
and the budget left unspent, in one run on one machine.

    python benchmarks/allocation.py                       # LLaMA-7B's 32 blocks x 7 linear layers
    python benchmarks/allocation.py --blocks 2 --out /tmp/a   # a tiny run

No model is loaded: only the layers' shapes and their loss curves matter to an allocator. Two curve shapes are drawn
per layer, seeded: `spectral`, a weighted tail of a power-law spectrum (convex, as the spectral loss model gives), and
`sensitivity`, losses measured at four rank ratios and interpolated (piecewise linear, not convex, as the
sensitivity loss model gives).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from common import REPO, device_description, timed_call, write_report

from fwsvd_core.compression.allocation import (
    OPTIMALITY_GAP,
    SENSITIVITY_RATIOS,
    allocate_exact,
    allocate_greedy,
    predicted_loss,
    sensitivity_curves,
)
from fwsvd_core.compression.ranks import compressed_params, original_params
from fwsvd_core.inputs.layers import LayerInfo

LLAMA_7B = {"query": (4096, 4096), "key": (4096, 4096), "value": (4096, 4096), "attention out": (4096, 4096),
            "FFN gate": (11008, 4096), "FFN in": (11008, 4096), "FFN out": (4096, 11008)}


def decoder_layers(blocks: int) -> list[LayerInfo]:
    return [LayerInfo(f"layers.{b}.{role}", b, role, out, inp, "linear")
            for b in range(blocks) for role, (out, inp) in LLAMA_7B.items()]


def spectral_like(layers: list[LayerInfo], rng: np.random.Generator) -> dict[str, np.ndarray]:
    curves = {}
    for layer in layers:
        energy = np.arange(1, layer.max_rank + 1, dtype=np.float64) ** -rng.uniform(0.6, 1.4)
        tail = np.concatenate([np.cumsum(energy[::-1])[::-1], [0.0]])
        curves[layer.name] = rng.lognormal(0.0, 1.0) * tail / tail[0]
    return curves


def sensitivity_like(layers: list[LayerInfo], rng: np.random.Generator) -> dict[str, np.ndarray]:
    rows = []
    for layer in layers:
        scale = rng.lognormal(-2.0, 1.0)
        for ratio in SENSITIVITY_RATIOS:
            rows.append({"layer": layer.name, "rank": max(1, int(ratio * layer.max_rank)),
                         "loss increase": scale * (1 - ratio) ** rng.uniform(1.0, 6.0)})
    return sensitivity_curves(layers, pd.DataFrame(rows))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blocks", type=int, default=32, help="decoder blocks (7 linear layers each)")
    parser.add_argument("--ratios", default="0.8,0.6,0.4,0.2", help="kept parameter ratios of the layers")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "allocation"))
    args = parser.parse_args(argv)
    layers = decoder_layers(args.blocks)
    rows = []
    for shape, draw in (("spectral", spectral_like), ("sensitivity", sensitivity_like)):
        curves = draw(layers, np.random.default_rng(args.seed))
        for ratio in (float(r) for r in args.ratios.split(",")):
            budget = int(ratio * original_params(layers))
            greedy, greedy_s = timed_call(allocate_greedy, layers, curves, budget)
            exact, exact_s = timed_call(allocate_exact, layers, curves, budget)
            g_loss, e_loss = predicted_loss(layers, curves, greedy), predicted_loss(layers, curves, exact)
            rows.append({"curves": shape, "kept ratio": ratio, "layers": len(layers),
                         "greedy s": round(greedy_s, 2), "exact s": round(exact_s, 2),
                         "greedy loss": f"{g_loss:.6g}", "exact loss": f"{e_loss:.6g}",
                         "exact lower by": f"{(g_loss - e_loss) / g_loss:.2%}" if g_loss else "0",
                         "greedy unspent": budget - compressed_params(layers, greedy),
                         "exact unspent": budget - compressed_params(layers, exact)})
            print(rows[-1], flush=True)
    command = "python benchmarks/allocation.py " + " ".join(sys.argv[1:] if argv is None else argv)
    notes = [f"Device: {device_description('cpu')}. 'loss' is the summed predicted loss increase of the curves; "
             "'unspent' the parameters of the budget left over (never negative: both meet the budget to the "
             f"parameter). The exact allocator is scipy's HiGHS on one binary per (layer, candidate rank), stopped "
             f"once proven within a relative gap of {OPTIMALITY_GAP:g} of the optimum on its candidate grid (every "
             "rank to 64, then every 8th, the break-even rank and the dense layer, for layers this wide); it never "
             "predicts more loss than greedy, whose ranks it also considers."]
    write_report(Path(args.out), "Exact against greedy rank allocation", command,
                 {f"{len(layers)} layers of LLaMA-7B's shapes": rows}, notes, {"rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
