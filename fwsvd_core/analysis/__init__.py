"""Step 4 of the flow: what the compressed models teach (sweeps, the SVD-failure predictor, ablation, figures)."""
from typing import TYPE_CHECKING

from fwsvd_core.lazy import lazy_exports

if TYPE_CHECKING:  # the names this package serves, imported on first use (fwsvd_core.lazy)
    from fwsvd_core.analysis.ablation import group_ablation
    from fwsvd_core.analysis.predictor import svd_failure_scores, validate_predictor
    from fwsvd_core.analysis.sweep import run_sweep

__getattr__, __dir__ = lazy_exports(__name__)

__all__ = ["group_ablation", "run_sweep", "svd_failure_scores", "validate_predictor"]
