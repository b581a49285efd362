"""Step 2 of the flow: what running the model on task data measures (losses, scores, Fisher, activation statistics)."""
from typing import TYPE_CHECKING

from fwsvd_core.lazy import lazy_exports

if TYPE_CHECKING:  # the names this package serves, imported on first use (fwsvd_core.lazy)
    from fwsvd_core.estimation.activations import ActivationStats, estimate_activation_stats
    from fwsvd_core.estimation.evaluation import EvalResult, evaluate, predict
    from fwsvd_core.estimation.fisher import FisherResult, directional_fisher, estimate_fisher, require_usable_fisher
    from fwsvd_core.estimation.losses import per_example_loss, task_targets
    from fwsvd_core.estimation.metrics import bootstrap_interval, compute_metrics

__getattr__, __dir__ = lazy_exports(__name__)

__all__ = [
    "ActivationStats", "EvalResult", "FisherResult", "bootstrap_interval", "compute_metrics", "directional_fisher",
    "estimate_activation_stats", "estimate_fisher", "evaluate", "per_example_loss", "predict", "require_usable_fisher",
    "task_targets",
]
