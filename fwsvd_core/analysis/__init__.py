"""Step 4 of the flow: what the compressed models teach (sweeps, the SVD-failure predictor, ablation, figures)."""
from fwsvd_core.analysis.ablation import group_ablation
from fwsvd_core.analysis.predictor import svd_failure_scores, validate_predictor
from fwsvd_core.analysis.sweep import run_sweep

__all__ = ["group_ablation", "run_sweep", "svd_failure_scores", "validate_predictor"]
