"""Time to factorize one layer with Kronecker factors: the old way (float64 throughout, both inverse factors formed)
against `kronecker_svd` (float64 square roots, float32 SVD and triangular solves where the conditioning allows), in
one run on one machine.

    python benchmarks/kronecker_svd.py               # 384x1536 (MiniLM), 1024x2752, 4096x11008 (LLaMA-7B MLP), 1 thread
    python benchmarks/kronecker_svd.py --sizes 64x128 --out /tmp/k  # a tiny run

Factors A (inputs) and B (output gradients) are random positive definite matrices whose eigenvalues spread over
`--spread` decades, damped as the methods damp them; the weight is Gaussian. The error column is the relative
Frobenius difference of the rank-r products (r a quarter of the full rank) from the old float64 computation.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from common import REPO, device_description, timed_call, write_report

from fwsvd_core.compression.factorization import (
    KRONECKER_DAMPING,
    KRONECKER_FLOAT32_CONDITION,
    damped,
    damped_condition_bound,
    kronecker_svd,
)


def spd(n: int, spread: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    return (q * torch.logspace(0, spread, n, dtype=torch.float64)) @ q.T


def old_products(weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor, damping: float, rank: int) -> torch.Tensor:
    """What kronecker_svd computed before: float64 throughout, inverse factors formed explicitly."""
    w = weight.double()
    l_a, l_b = torch.linalg.cholesky(damped(a, damping)), torch.linalg.cholesky(damped(b, damping))
    eye_a = torch.eye(a.shape[0], dtype=torch.float64)
    eye_b = torch.eye(b.shape[0], dtype=torch.float64)
    inv_a = torch.linalg.solve_triangular(l_a, eye_a, upper=False)
    inv_b = torch.linalg.solve_triangular(l_b, eye_b, upper=False)
    u, s, vh = torch.linalg.svd(l_b.T @ w @ l_a, full_matrices=False)
    return (inv_b.T @ (u * s[None, :]))[:, :rank] @ (vh @ inv_a)[:rank]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="384x1536,1024x2752,4096x11008", help="out x in of each layer")
    parser.add_argument("--spread", type=float, default=6.0, help="decades the factors' eigenvalues spread over")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: steady timings on a machine shared with other work)")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "kronecker_svd"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for size in args.sizes.split(","):
        n_out, n_in = (int(x) for x in size.split("x"))
        weight = torch.randn(n_out, n_in, generator=torch.Generator().manual_seed(0))
        a, b = spd(n_in, args.spread, 1), spd(n_out, args.spread, 2)
        rank = min(n_out, n_in) // 4
        old, old_seconds = timed_call(old_products, weight, a, b, KRONECKER_DAMPING, rank)
        factors, new_seconds = timed_call(kronecker_svd, weight, a, b, "kfac", KRONECKER_DAMPING)
        new = factors.left[:, :rank].double() @ factors.right[:rank].double()
        bound = max(damped_condition_bound(a, KRONECKER_DAMPING), damped_condition_bound(b, KRONECKER_DAMPING))
        rows.append({"layer (out x in)": size, "rank": rank,
                     "path": "float32" if bound <= KRONECKER_FLOAT32_CONDITION else "float64",
                     "condition bound": f"{bound:.3g}", "old s": round(old_seconds, 2), "new s": round(new_seconds, 2),
                     "speed-up": round(old_seconds / new_seconds, 2),
                     "relative error": f"{float((new - old).norm() / old.norm()):.2g}"})
        print(rows[-1], flush=True)
    command = "python benchmarks/kronecker_svd.py " + " ".join(sys.argv[1:])
    notes = [f"Device: {device_description('cpu')}, {torch.get_num_threads()} threads; damping {KRONECKER_DAMPING} of "
             f"each factor's mean diagonal, eigenvalues spread over {args.spread:g} decades. 'path' is the precision "
             f"of the SVD and the solves (float64 when a damped factor's condition bound exceeds "
             f"{KRONECKER_FLOAT32_CONDITION:g}). The SVD is nearly all of the time: forming the inverses cost under "
             "half a second at 1024 x 2752, and float32's SVD is the speed-up. Timings on a machine shared with "
             "other work vary run to run; the ratio within one run is the figure to read."]
    write_report(Path(args.out), "Factorizing one layer with Kronecker factors", command,
                 {"Old (float64, inverses formed) against kronecker_svd": rows}, notes, {"rows": rows})


if __name__ == "__main__":
    main()
