"""fwsvd_core: Fisher-weighted low-rank compression of fine-tuned transformers (no Streamlit here).

The short API a notebook needs::

    import fwsvd_core as fw
    loaded = fw.load_model("demo:sst2")
    train = fw.load_task_data(fw.get_task("sst2"), "train", data_dir="../shared/data/glue")
    session = fw.CompressionSession(loaded)
    session.set_fisher(fw.estimate_fisher(loaded.model, loaded.tokenizer, train, 256))
    compressed = session.compress("fwsvd-output", fw.uniform_ranks(session.layers, 0.3))
"""

__version__ = "0.1.0"

from .allocation import allocate
from .data import TaskData, load_file, load_task_data
from .errors import FwsvdError
from .evaluation import evaluate
from .export import load_compressed, save_compressed
from .fisher import estimate_fisher
from .loading import load_model
from .methods import Method, get_method, method_names, register
from .ranks import uniform_ranks, validate_ranks
from .session import CompressionSession
from .sweep import run_sweep
from .tasks import get_task

__all__ = [
    "CompressionSession", "FwsvdError", "Method", "TaskData", "__version__", "allocate", "estimate_fisher", "evaluate",
    "get_method", "get_task", "load_compressed", "load_file", "load_model", "load_task_data", "method_names",
    "register", "run_sweep", "save_compressed", "uniform_ranks", "validate_ranks",
]
