"""The task loss per example, and the targets it compares with: each task family declares its own
(`inputs.families`); the sequence family's are kept under these names."""
from __future__ import annotations

from fwsvd_core.inputs.families.sequence import per_example_loss, task_targets

__all__ = ["per_example_loss", "task_targets"]
