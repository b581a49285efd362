"""Step 3 of the flow: methods, low-rank layers, rank maps and their allocation, fine-tuning after, export."""
from typing import TYPE_CHECKING

from fwsvd_core.lazy import lazy_exports

if TYPE_CHECKING:  # the names this package serves, imported on first use (fwsvd_core.lazy)
    from fwsvd_core.compression.allocation import ALLOCATORS, allocate
    from fwsvd_core.compression.apply import compress
    from fwsvd_core.compression.export import load_compressed, save_compressed
    from fwsvd_core.compression.factorization import Factors
    from fwsvd_core.compression.finetune import finetune, finetune_compressed
    from fwsvd_core.compression.lowrank import LowRankLinear
    from fwsvd_core.compression.methods import Method, factorize, get_method, method_names, register
    from fwsvd_core.compression.ranks import RankMap, read_rank_file, uniform_ranks, validate_ranks
    from fwsvd_core.compression.session import CompressionSession

__getattr__, __dir__ = lazy_exports(__name__)

__all__ = [
    "ALLOCATORS", "CompressionSession", "Factors", "LowRankLinear", "Method", "RankMap", "allocate", "compress",
    "factorize", "finetune", "finetune_compressed", "get_method", "load_compressed", "method_names", "read_rank_file",
    "register", "save_compressed", "uniform_ranks", "validate_ranks",
]
