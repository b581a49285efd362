"""Low-rank factors of a layer (any rank is a slice), the scalings methods use, and reconstruction errors.

The methods themselves, each with what it needs, are in `fwsvd_core.compression.methods`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

ASVD_ALPHA = 0.5
# added to each Kronecker factor, relative to the mean of its diagonal (chosen by measurement: docs/kronecker_damping.md)
KRONECKER_DAMPING = 1e-2
# the condition number of a damped Kronecker factor above which its SVD and solves stay in float64: float32's
# relative precision (6e-8) times sqrt(1e6) keeps the mapped-back factors within about 1e-4 (measured in
# benchmarks/kronecker_svd.py)
KRONECKER_FLOAT32_CONDITION = 1e6
# a row whose importance is below this fraction of the mean is clamped to it (dead neurons, padding)
IMPORTANCE_FLOOR = 1e-6


@dataclass
class Factors:
    """W ~ left[:, :r] @ right[:r] for every rank r, W in [out, in] layout.

    `spectrum` holds the singular values of the matrix the method decomposed (W itself for
    SVD, the row-scaled W for FWSVD); `d_out` / `d_in` are the scalings (None = not scaled).
    """

    left: torch.Tensor  # [out, k]
    right: torch.Tensor  # [k, in]
    spectrum: torch.Tensor  # [k]
    d_out: torch.Tensor | None
    d_in: torch.Tensor | None
    method: str

    @property
    def max_rank(self) -> int:
        return self.spectrum.shape[0]

    def reconstruct(self, rank: int) -> torch.Tensor:
        return self.left[:, :rank] @ self.right[:rank]

    _PARTS = ("left", "right", "spectrum", "d_out", "d_in")

    def to_tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """Flat name -> tensor entries for a safetensors file."""
        return {f"{prefix}/{p}": getattr(self, p) for p in self._PARTS if getattr(self, p) is not None}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str, method: str, device) -> Factors:
        def part(name: str) -> torch.Tensor | None:
            tensor = tensors.get(f"{prefix}/{name}")
            return None if tensor is None else tensor.to(device)

        left, right, spectrum = part("left"), part("right"), part("spectrum")
        if left is None or right is None or spectrum is None:
            raise KeyError(f"{prefix}: the stored factors are incomplete")
        return cls(left, right, spectrum, part("d_out"), part("d_in"), method)


def importance_scaling(fisher: torch.Tensor, side: str) -> torch.Tensor:
    """sqrt of the summed Fisher per output row (side='output') or input column (side='input'), clamped."""
    return importance_from_sums(fisher.double().sum(dim=1 if side == "output" else 0))


def importance_from_sums(sums: torch.Tensor) -> torch.Tensor:
    """sqrt of a Fisher row- or column-sum profile, clamped at a small fraction of its mean."""
    sums = torch.nan_to_num(sums.double(), nan=0.0, posinf=0.0).clamp_min(0.0)
    mean = float(sums.mean())
    if mean <= 0.0:
        return torch.ones_like(sums, dtype=torch.float32)  # no information: fall back to plain SVD
    return sums.clamp_min(IMPORTANCE_FLOOR * mean).sqrt().float()


def square_root(matrix: torch.Tensor) -> tuple[torch.Tensor, str]:
    """L with L L^T equal to the symmetric `matrix` (float64), and how it was had: Cholesky (L lower triangular),
    with growing jitter when the matrix is singular (dead or duplicated channels), else an eigendecomposition with
    clamped eigenvalues (L = V sqrt(diag), not triangular)."""
    c = matrix.double()
    scale = float(c.diagonal().mean()) or 1.0
    eye = torch.eye(c.shape[0], dtype=c.dtype, device=c.device)
    for jitter in (0.0, 1e-8, 1e-6, 1e-4, 1e-2):
        factor, info = torch.linalg.cholesky_ex(c + jitter * scale * eye if jitter else c)
        if int(info) == 0:
            return factor, "cholesky" if jitter == 0 else f"cholesky+jitter {jitter:g}"
    values, vectors = torch.linalg.eigh(c)
    return vectors * values.clamp_min(1e-6 * scale).sqrt(), "eigh (clamped)"


def whitening(second_moment: torch.Tensor,
              dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor, str]:
    """S and S^-1 with S S^T equal to the input second moment (SVD-LLM), and how S was had (`square_root`), both
    in `dtype`."""
    factor, how = square_root(second_moment)
    if how.startswith("cholesky"):
        eye = torch.eye(factor.shape[0], dtype=factor.dtype, device=factor.device)
        inverse = torch.linalg.solve_triangular(factor, eye, upper=False)
    else:
        inverse = torch.linalg.pinv(factor)
    return factor.to(dtype), inverse.to(dtype), how


def damped(matrix: torch.Tensor, damping: float) -> torch.Tensor:
    """matrix + damping * mean(diagonal) * I."""
    if damping <= 0:
        return matrix
    return matrix + damping * float(matrix.diagonal().mean()) * torch.eye(matrix.shape[0], dtype=matrix.dtype,
                                                                          device=matrix.device)


def kronecker_svd(weight: torch.Tensor, a: torch.Tensor, b: torch.Tensor, method: str,
                  damping: float = KRONECKER_DAMPING) -> Factors:
    """Factors minimising tr(dW^T B dW A) at every rank: the SVD of L_B^T W L_A, mapped back.

    With L_A L_A^T = A and L_B L_B^T = B (damped), W_r = L_B^-T [L_B^T W L_A]_r L_A^-1, and the discarded
    squared singular values add up to the objective. The square roots are taken in float64; the mapping back is two
    triangular solves (no inverse is formed), and the SVD and the solves run in float32 unless a factor is so badly
    conditioned that float32 would lose the directions it scales up (`KRONECKER_FLOAT32_CONDITION`).
    """
    a, b = a.to(weight.device).double(), b.to(weight.device).double()
    l_a, how_a = square_root(damped(a, damping))
    l_b, how_b = square_root(damped(b, damping))
    triangular = how_a.startswith("cholesky") and how_b.startswith("cholesky")
    narrow = max(damped_condition_bound(a, damping), damped_condition_bound(b, damping)) <= KRONECKER_FLOAT32_CONDITION
    dtype = torch.float32 if narrow and triangular else torch.float64
    w, l_a, l_b = weight.detach().to(dtype), l_a.to(dtype), l_b.to(dtype)
    u, s, vh = torch.linalg.svd(l_b.T @ w @ l_a, full_matrices=False)
    if triangular:
        left = torch.linalg.solve_triangular(l_b.T, u * s[None, :], upper=True)  # L_B^-T U S
        right = torch.linalg.solve_triangular(l_a, vh, upper=False, left=False)  # Vh L_A^-1
    else:
        left, right = torch.linalg.pinv(l_b).T @ (u * s[None, :]), vh @ torch.linalg.pinv(l_a)
    left, right = balanced(left, right)
    return Factors(left.float().contiguous(), right.float().contiguous(), s.float(), None, None, method)


def damped_condition_bound(matrix: torch.Tensor, damping: float) -> float:
    """An upper bound of the condition number of `damped(matrix, damping)` for a positive semi-definite matrix: its
    largest eigenvalue is at most its largest absolute row sum (Gershgorin), its smallest at least the damping added
    (inf without damping)."""
    shift = damping * float(matrix.diagonal().mean())
    if shift <= 0:
        return float("inf")
    return (float(matrix.abs().sum(dim=1).max()) + shift) / shift


def balanced(left: torch.Tensor, right: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The same products left[:, :r] @ right[:r], each component scaled so its two halves have equal norms.

    Kronecker factors in loss units can make one half a million times larger than the other; fine-tuning then
    moves the small half by steps as large as the big one's and diverges, and half precision loses one of them.
    """
    scale = (right.norm(dim=1) / left.norm(dim=0).clamp_min(1e-30)).clamp_min(1e-30).sqrt()
    return left * scale[None, :], right / scale[:, None]


def activation_scaling(mean_abs: torch.Tensor, alpha: float = ASVD_ALPHA) -> torch.Tensor:
    """ASVD's per-input-channel scale: mean |x| to the power alpha, clamped away from zero."""
    m = torch.nan_to_num(mean_abs.double(), nan=0.0).clamp_min(0.0)
    mean = float(m.mean())
    if mean <= 0.0:
        return torch.ones_like(m, dtype=torch.float32)
    return m.clamp_min(IMPORTANCE_FLOOR * mean).pow(alpha).float()


def scaled_svd(weight: torch.Tensor, method: str, d_out: torch.Tensor | None = None,
               d_in: torch.Tensor | None = None) -> Factors:
    """Factors of W from the SVD of diag(d_out) W diag(d_in), the scalings undone on the factors (None: no scaling).

    With no scaling this is plain SVD; FWSVD scales by Fisher row or column sums, ASVD by input activations.
    """
    w = weight.detach().float()
    scaled = w
    if d_out is not None:
        scaled = d_out[:, None] * scaled
    if d_in is not None:
        scaled = scaled * d_in[None, :]
    u, s, vh = torch.linalg.svd(scaled, full_matrices=False)
    left = u * s[None, :]
    right = vh
    if d_out is not None:
        left = left / d_out[:, None]
    if d_in is not None:
        right = right / d_in[None, :]
    return Factors(left.contiguous(), right.contiguous(), s, d_out, d_in, method)


def reconstruction_errors(
    weight: torch.Tensor, factors: Factors, fisher: torch.Tensor | None, ranks: list[int] | None = None,
) -> dict[str, np.ndarray]:
    """Relative errors of the rank-r approximation at each rank.

    `plain`: ||W - W_r||_F / ||W||_F. `fisher`: sqrt(sum I (W - W_r)^2 / sum I W^2), the element-wise
    Fisher-weighted error. `objective`: the method's own scaled error, read off its spectrum.
    The residual is built from the smallest-rank end up, one block of components at a time, so all
    ranks cost about one dense reconstruction.
    """
    k = factors.max_rank
    ranks = sorted(set(range(0, k + 1) if ranks is None else (min(max(int(r), 0), k) for r in ranks)))
    w = weight.detach().float()
    residual = w - factors.reconstruct(k)
    norm_w = float(w.norm()) or 1.0
    weights = None if fisher is None else fisher.float().to(w.device)
    norm_fw = float(((weights * w * w).sum()).sqrt()) if weights is not None else 1.0
    norm_fw = norm_fw or 1.0
    energy = (factors.spectrum.double() ** 2).flip(0).cumsum(0).flip(0)  # energy[r] = sum_{i>=r} s_i^2
    total = float(energy[0]) or 1.0
    plain, weighted, objective = {}, {}, {}
    upper = k
    for r in reversed(ranks):
        if r < upper:
            residual = residual + factors.left[:, r:upper] @ factors.right[r:upper]
            upper = r
        plain[r] = float(residual.norm()) / norm_w
        weighted[r] = float(((weights * residual * residual).sum()).sqrt()) / norm_fw if weights is not None else np.nan
        objective[r] = (float(energy[r]) / total) ** 0.5 if r < k else 0.0
    return {
        "rank": np.array(ranks),
        "plain": np.array([plain[r] for r in ranks]),
        "fisher": np.array([weighted[r] for r in ranks]),
        "objective": np.array([objective[r] for r in ranks]),
    }

