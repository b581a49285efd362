"""fwsvd_core: Fisher-weighted low-rank compression of fine-tuned transformers (no Streamlit here).

The short API a notebook needs::

    import fwsvd_core as fw
    loaded = fw.load_model("demo:sst2")
    train = fw.load_task_data(fw.get_task("sst2"), "train", data_dir="../shared/data/glue")
    session = fw.CompressionSession(loaded)
    session.set_fisher(fw.estimate_fisher(loaded.model, loaded.tokenizer, train, 256))
    compressed = session.compress("fwsvd-output", fw.uniform_ranks(session.layers, 0.3))
"""

from typing import TYPE_CHECKING

from fwsvd_core.lazy import lazy_exports

__version__ = "0.1.0"

if TYPE_CHECKING:  # the names this package serves, imported on first use (fwsvd_core.lazy)
    from fwsvd_core.analysis import run_sweep
    from fwsvd_core.compression import (
        CompressionSession,
        Method,
        allocate,
        get_method,
        load_compressed,
        method_names,
        register,
        save_compressed,
        uniform_ranks,
        validate_ranks,
    )
    from fwsvd_core.errors import FwsvdError
    from fwsvd_core.estimation import estimate_fisher, evaluate
    from fwsvd_core.inputs import TaskData, get_task, load_file, load_task_data
    from fwsvd_core.loading import load_model

__getattr__, __dir__ = lazy_exports(__name__)

__all__ = [
    "CompressionSession", "FwsvdError", "Method", "TaskData", "__version__", "allocate", "estimate_fisher", "evaluate",
    "get_method", "get_task", "load_compressed", "load_file", "load_model", "load_task_data", "method_names",
    "register", "run_sweep", "save_compressed", "uniform_ranks", "validate_ranks",
]
