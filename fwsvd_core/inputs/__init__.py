"""Step 1 of the flow: models and task data as the tool reads them (no statistic is computed here)."""
from typing import TYPE_CHECKING

from fwsvd_core.lazy import lazy_exports

if TYPE_CHECKING:  # the names this package serves, imported on first use (fwsvd_core.lazy)
    from fwsvd_core.inputs.batching import Encoded, iter_batches
    from fwsvd_core.inputs.data import TaskData, load_file
    from fwsvd_core.inputs.families import Family, encode, family_names, family_of, get_family, load_task_data
    from fwsvd_core.inputs.labels import LabelMapping, map_labels
    from fwsvd_core.inputs.layers import LayerInfo, find_layers, require_layers
    from fwsvd_core.inputs.memory import MemoryEstimate, check_fisher, check_model_load
    from fwsvd_core.inputs.models import LoadedModel, load_pretrained
    from fwsvd_core.inputs.tasks import TaskSpec, custom_task, get_task

__getattr__, __dir__ = lazy_exports(__name__)

__all__ = [
    "Encoded", "Family", "LabelMapping", "LayerInfo", "LoadedModel", "MemoryEstimate", "TaskData", "TaskSpec",
    "check_fisher", "check_model_load", "custom_task", "encode", "family_names", "family_of", "find_layers",
    "get_family", "get_task", "iter_batches", "load_file", "load_pretrained", "load_task_data", "map_labels",
    "require_layers",
]
