"""Memory estimates made from a model's config, before loading it or computing its Fisher.

A step that does not fit is refused with the estimate and what would make it fit, rather than
being killed by the system half way. The figures are deliberately on the high side: the parts
are added up as if they all peaked at once, and the activation factors below are rounded up from
measurements of BERT, DistilBERT, GPT-2 and LLaMA on the CPU (float32).
"""
from __future__ import annotations

import math
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import torch

from fwsvd_core.errors import FwsvdError, InsufficientMemoryError
from fwsvd_core.inputs.layers import GATED_FFN_ROLES, find_layers
from fwsvd_core.inputs.precision import as_dtype

ESTIMATORS = ("per-sample", "batch")  # the Fisher's estimators (fisher.py computes them)
# what the Fisher keeps: every weight's value, or only each layer's row and column sums (enough for FWSVD)
FISHER_FORMS = ("full", "profiles")
# elements of one chunk of per-example gradients: bounds the memory of the vectorised Fisher estimator
CHUNK_ELEMENTS = 4 * 1024 * 1024

MEMORY_LIMIT_ENV = "FWSVD_MEMORY_LIMIT"
FLOAT32 = 4

# Saved activations of one transformer block per token, in floats, measured with the CPU profiler on
# BERT, DistilBERT, GPT-2 and LLaMA (sdpa attention, float32) and rounded up: about 8 hidden-sized
# tensors, and per intermediate feature 2 (BERT's fused GELU), 4 (LLaMA's gated FFN: gate, up, SiLU,
# product) or 5.5 (GPT-2 and ALBERT's gelu_new, composed of elementwise operations that each keep their input).
ACT_PER_HIDDEN = 10
ACT_PER_INTERMEDIATE = 3
ACT_PER_INTERMEDIATE_GATED = 5
ACT_PER_INTERMEDIATE_COMPOSED = 7
# activations transformers writes as several elementwise operations rather than one fused kernel
COMPOSED_ACTIVATIONS = frozenset({"gelu_new", "gelu_fast", "gelu_python", "gelu_accurate", "quick_gelu", "gelu_10"})
# The attention probabilities [batch, heads, tokens, tokens] an eager attention keeps for the backward
# pass, per head and token; the fused (sdpa) kernels keep none, but a model may not use them.
ACT_PER_ATTENTION = 1
# The expanded attention mask: a few [batch, tokens, tokens] tensors, once for the model.
MASK_PER_TOKEN = 4
# Python lists of token ids kept for the whole run: a list slot plus an int object per token.
TOKEN_BYTES = 64

_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}


@dataclass(frozen=True)
class MemoryEstimate:
    """Bytes per part of a step's peak memory; `total` adds them as if they all peaked together."""

    what: str
    parts: dict[str, int]

    @property
    def total(self) -> int:
        return int(sum(self.parts.values()))

    def describe(self) -> str:
        """One line: what, the total, and each part."""
        details = ", ".join(f"{name} {format_bytes(size)}" for name, size in self.parts.items())
        return f"{self.what}: {format_bytes(self.total)} ({details})"


@dataclass(frozen=True)
class ModelShape:
    """What the estimates need of a model, read from its config without allocating its weights."""

    n_params: int
    largest_tensor: int  # elements of the largest parameter
    buffer_bytes: int
    compressible: tuple[tuple[str, int, int], ...]  # (layer name, out features, in features)
    hidden_size: int
    num_layers: int
    intermediate_size: int
    num_heads: int
    calls_per_layer: int  # > 1 where blocks share their weights (ALBERT): each layer runs that many times
    activation: str  # the FFN's activation function as the config names it ('' if it does not)
    gated_ffn: bool  # the FFN multiplies a gate with an up projection (LLaMA)
    exact: bool  # False when the model could not be built on the meta device and the sizes are guessed

    @property
    def compressible_params(self) -> int:
        return sum(out_f * in_f for _, out_f, in_f in self.compressible)

    @property
    def fisher_bytes(self) -> int:
        """The Fisher's float32 [out, in] sums over the compressible layers."""
        return FLOAT32 * self.compressible_params

    @property
    def profile_bytes(self) -> int:
        """The low-memory Fisher's float32 row and column sums over the compressible layers."""
        return FLOAT32 * sum(out_f + in_f for _, out_f, in_f in self.compressible)

    @property
    def activation_floats(self) -> int:
        """Floats autograd keeps per token and block, besides the attention matrix."""
        if self.gated_ffn:
            per_intermediate = ACT_PER_INTERMEDIATE_GATED
        elif self.activation in COMPOSED_ACTIVATIONS:
            per_intermediate = ACT_PER_INTERMEDIATE_COMPOSED
        else:
            per_intermediate = ACT_PER_INTERMEDIATE
        return ACT_PER_HIDDEN * self.hidden_size + per_intermediate * self.intermediate_size

    @property
    def features_per_token(self) -> tuple[int, int]:
        """(inputs, outputs) summed over every call of every compressible layer, per token."""
        ins = sum(in_f for _, _, in_f in self.compressible) * self.calls_per_layer
        outs = sum(out_f for _, out_f, _ in self.compressible) * self.calls_per_layer
        return ins, outs


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def format_count(n: int) -> str:
    """6_607_351_808 -> '6.61 B'."""
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return str(n)


def _config_int(config, names: tuple[str, ...], default: int | None = None) -> int | None:
    """The first of `names` the config sets to a positive number: architectures name the same size differently."""
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def _text_config(config):
    """The language part of a composite config (vision-text models); the config itself otherwise."""
    getter = getattr(config, "get_text_config", None)
    try:
        return getter() if callable(getter) else config
    except Exception:
        return config


def _config_size(config, names: tuple[str, ...], default: int) -> int:
    """`_config_int` with a default: always a size."""
    value = _config_int(config, names, default)
    return default if value is None else value


def config_sizes(config) -> tuple[int, int, int, int]:
    """(hidden size, layers, intermediate size, attention heads) read from the config, with fallbacks."""
    text = _text_config(config)
    hidden = _config_size(text, ("hidden_size", "n_embd", "dim", "d_model", "model_dim", "embed_dim"), 768)
    layers = _config_size(text, ("num_hidden_layers", "n_layer", "n_layers", "num_layers", "encoder_layers"), 12)
    intermediate = _config_size(text, ("intermediate_size", "n_inner", "hidden_dim", "ffn_dim", "d_ff",
                                       "encoder_ffn_dim"), 4 * hidden)
    heads = _config_size(text, ("num_attention_heads", "n_head", "n_heads", "num_heads", "encoder_attention_heads"),
                         max(1, hidden // 64))
    return hidden, layers, intermediate, heads


def config_activation(config) -> str:
    """The FFN's activation function name, under whichever key the architecture uses."""
    text = _text_config(config)
    for name in ("hidden_act", "activation_function", "activation", "hidden_activation", "ffn_activation"):
        value = getattr(text, name, None)
        if isinstance(value, str):
            return value
    return ""


def _meta_model(config):
    """The sequence-classification model of `config` on the meta device: shapes without storage."""
    from transformers import AutoModelForSequenceClassification

    with torch.device("meta"):
        return AutoModelForSequenceClassification.from_config(config)


def _guessed_layers(hidden: int, layers: int, intermediate: int) -> tuple[tuple[str, int, int], ...]:
    """A BERT-like block's four attention maps and two FFN maps, for configs that cannot be built."""
    block = [("query", hidden, hidden), ("key", hidden, hidden), ("value", hidden, hidden),
             ("attention output", hidden, hidden), ("FFN in", intermediate, hidden), ("FFN out", hidden, intermediate)]
    return tuple((f"layer.{i}.{name}", out_f, in_f) for i in range(layers) for name, out_f, in_f in block)


def model_shape(config) -> ModelShape:
    """Parameter count and compressible layer shapes of `config`'s classification model, built on the meta device.

    Nothing is allocated, so a 7B config takes a fraction of a second. A config that transformers
    cannot build (an unknown or remote-code architecture) gets a BERT-like guess from its sizes.
    """
    hidden, layers, intermediate, heads = config_sizes(config)
    try:
        model = _meta_model(config)
    except Exception:
        guessed = _guessed_layers(hidden, layers, intermediate)
        vocab = _config_size(_text_config(config), ("vocab_size",), 32000)
        n_params = sum(o * i for _, o, i in guessed) + vocab * hidden
        largest = max(vocab * hidden, hidden * intermediate)
        return ModelShape(n_params, largest, 0, guessed, hidden, layers, intermediate, heads, 1,
                          config_activation(config), gated_ffn=False, exact=False)
    n_params = sum(p.numel() for p in model.parameters())  # parameters() yields a shared or tied weight once
    buffer_bytes = sum(b.numel() * b.element_size() for b in model.buffers())
    found = find_layers(model)
    compressible = tuple((l.name, l.out_features, l.in_features) for l in found)
    blocks = {l.block for l in found}
    # ALBERT runs one shared block num_hidden_layers times: its layers are captured once per call
    calls = math.ceil(layers / len(blocks)) if blocks and len(blocks) < layers else 1
    gated = any(l.role in GATED_FFN_ROLES for l in found)
    largest = max((p.numel() for p in model.parameters()), default=0)
    return ModelShape(n_params, largest, buffer_bytes, compressible, hidden, layers, intermediate, heads, calls,
                      config_activation(config), gated, exact=True)


def parameter_count(config) -> int:
    """Parameters of `config`'s classification model, counted on the meta device."""
    return model_shape(config).n_params


def config_dtype(config) -> torch.dtype:
    """The checkpoint's dtype as its config states it (transformers loads weights in it); float32 if unstated."""
    value = getattr(config, "dtype", None)
    if value is None and "torch_dtype" in getattr(config, "__dict__", {}):  # older configs; avoids v5's warning
        value = config.__dict__["torch_dtype"]
    try:
        return as_dtype(value) or torch.float32
    except FwsvdError:
        return torch.float32  # a config with an odd dtype entry still gets an estimate


def dtype_bytes(config_or_dtype) -> int:
    """Bytes per weight: of a dtype, a dtype name, or the dtype a config's checkpoint is stored in."""
    if config_or_dtype is None or isinstance(config_or_dtype, (torch.dtype, str)):
        dtype = as_dtype(config_or_dtype) or torch.float32
    else:
        dtype = config_dtype(config_or_dtype)
    return dtype.itemsize


def _weights_part(shape: ModelShape, dtype) -> int:
    return shape.n_params * dtype_bytes(dtype) + shape.buffer_bytes


def _what(shape: ModelShape, action: str) -> str:
    guess = " (sizes guessed from the config)" if not shape.exact else ""
    return f"{action} {format_count(shape.n_params)} weights{guess}"


def estimate_model_load(config, dtype=None, pickled_checkpoint: bool = False) -> MemoryEstimate:
    """Loading the model on the CPU: its weights in `dtype` (default: the checkpoint's) and the tensor in flight.

    transformers reads a safetensors checkpoint through a memory map, tensor by tensor: the mapped
    pages are page cache the kernel can drop, so besides the weights only the tensor being copied
    (or converted to `dtype`) counts. A pickled checkpoint (pytorch_model.bin) is read whole first:
    `pickled_checkpoint` counts it a second time.
    """
    shape = model_shape(config)
    dtype = config if dtype is None else dtype
    # the largest tensor twice (as read, and converted), counted in float32 for margin
    parts = {"weights": _weights_part(shape, dtype),
             "tensor being read": 2 * shape.largest_tensor * max(FLOAT32, dtype_bytes(dtype))}
    if pickled_checkpoint:
        parts["pickled checkpoint read whole"] = shape.n_params * dtype_bytes(config)
    return MemoryEstimate(_what(shape, "Loading"), parts)


def _chunk_bytes(shape: ModelShape, batch_size: int, estimator: str, form: str = "full", max_length: int = 0) -> int:
    """Temporaries of one layer's Fisher update, as fisher._accumulate_batch (or _accumulate_profiles) makes them
    (largest layer)."""
    largest = 0
    for _, out_f, in_f in shape.compressible:
        size = out_f * in_f
        if form == "profiles" and estimator == "per-sample":  # token Gram matrices and their products, per chunk
            per_example = max_length * (2 * max_length + out_f + in_f)
            largest = max(largest, min(batch_size, max(1, CHUNK_ELEMENTS // per_example)) * per_example)
        elif estimator == "batch":
            largest = max(largest, 3 * size)  # the product, its scaled copy and its square
        else:
            step = min(batch_size, max(1, CHUNK_ELEMENTS // size))
            largest = max(largest, (step + 1) * size)  # the per-example products and their sum
    return FLOAT32 * largest


def _activation_floats(shape: ModelShape, max_length: int, checkpointed: bool = False, eager: bool = True) -> int:
    """Floats per token a backward pass through every block keeps (`checkpointed`: each block's input, and one block's
    activations at a time, as `estimation.gradients.activation_checkpointing` runs it; `eager`: with the attention's
    probabilities)."""
    per_block = shape.activation_floats + (ACT_PER_ATTENTION * shape.num_heads * max_length if eager else 0)
    # one block more: the backward's gradient temporaries of the block it is in
    blocks = 2 if checkpointed else shape.num_layers + 1
    inputs = shape.num_layers * shape.hidden_size if checkpointed else 0
    return blocks * per_block + inputs + MASK_PER_TOKEN * max_length + 2 * shape.hidden_size


def backward_activations(config, batch_size: int, max_length: int, checkpointed: bool = False) -> int:
    """Bytes of the activations one batch's backward pass keeps, in the config's dtype (see `estimate_fisher`); an
    attention's probabilities are counted unless the config names a fused kernel (sdpa, flash attention), which
    keeps none."""
    shape = model_shape(config)  # read first: building the model may settle the attention's kernel on the config
    eager = getattr(config, "_attn_implementation", None) in (None, "eager")
    floats = _activation_floats(shape, max_length, checkpointed, eager)
    return dtype_bytes(config) * batch_size * max_length * floats


def _check_fisher_args(estimator: str, batch_size: int, max_length: int) -> None:
    """FwsvdError for an unknown estimator or a size that is not positive."""
    if estimator not in ESTIMATORS:
        raise FwsvdError(f"Unknown Fisher estimator {estimator!r}; choose from {ESTIMATORS}.")
    if batch_size <= 0 or max_length <= 0:
        raise FwsvdError(f"Batch size and max length must be positive, got {batch_size} and {max_length}.")


def estimate_fisher(
    config, batch_size: int, max_length: int, estimator: str = "per-sample", dtype=None,
    n_examples: int | None = None, weights_loaded: bool = False, form: str = "full",
) -> MemoryEstimate:
    """Peak memory of fisher.compute_fisher and of caching its result; every tensor counted in float32.

    T = batch_size * max_length tokens; in / out = the compressible layers' input / output features
    summed over every call (ALBERT calls its shared layers once per block).
    - weights: parameters in `dtype` (default: the checkpoint's) plus buffers; left out with
      `weights_loaded`, when the model is already in memory and so no longer in what is available;
    - Fisher storage: the float32 [out, in] sums, 4 * sum(out * in) bytes (exact); for the low-memory form
      (`form='profiles'`) the row and column sums, 4 * sum(out + in);
    - Fisher result: the averaged copy made at the end, and the bytes written to the cache;
    - previous batch: 4 * T * (in + 2 * out): its layer inputs, outputs and output gradients are still
      referenced while the next batch runs (compute_fisher keeps them until the next yield); a shared
      layer (ALBERT) adds in + out for the concatenation of its calls;
    - activations and gradients: 4 * T * max(captured in + 2 * out, per-block activations * blocks),
      the larger of the forward's saved activations and the backward's end, when all of this batch's
      inputs, outputs and output gradients are held. Per block and token the activations are
      10 * hidden + 3 * intermediate floats (5 for a gated FFN, 7 for a composed GELU) plus
      heads * tokens for an eager attention's probabilities; blocks + 1 of them (the backward's
      temporaries in the block it is in), plus the mask, 4 * tokens, and 2 * hidden once;
    - per-example gradient chunk: the [chunk, out, in] products of the largest layer, chunk bounded
      by CHUNK_ELEMENTS, and their sum (the batch estimator: three [out, in] temporaries);
    - tokenized examples, if `n_examples` is given: 64 bytes per token, as Python lists.
    The parts are added as if they all peaked at once, which they do not quite: measured on the CPU
    the total is 1.2 to 1.7 times the real peak. Half-precision models are counted as float32.
    """
    _check_fisher_args(estimator, batch_size, max_length)
    return _fisher_estimate(model_shape(config), config if dtype is None else dtype, batch_size, max_length,
                            estimator, n_examples, weights_loaded, form)


def _fisher_estimate(shape: ModelShape, dtype, batch_size: int, max_length: int, estimator: str,
                     n_examples: int | None, weights_loaded: bool, form: str = "full") -> MemoryEstimate:
    """estimate_fisher on a shape already read; `dtype` is a dtype, its name, or the config."""
    tokens = batch_size * max_length
    ins, outs = shape.features_per_token
    captured = ins + 2 * outs
    if shape.calls_per_layer > 1:  # a shared layer's calls are concatenated: a copy of its inputs and gradients
        captured += ins + outs
    activations = _activation_floats(shape, max_length)
    batch = f"batch {batch_size}, {max_length} tokens"
    storage = shape.profile_bytes if form == "profiles" else shape.fisher_bytes
    parts = {
        "weights": _weights_part(shape, dtype),
        "Fisher storage": storage,
        "Fisher result": storage,
        f"previous batch's layer inputs and gradients ({batch})": FLOAT32 * tokens * captured,
        f"activations and gradients ({batch})": FLOAT32 * tokens * max(captured, activations),
        "per-example gradient chunk": _chunk_bytes(shape, batch_size, estimator, form, max_length),
    }
    if weights_loaded:
        del parts["weights"]
    if n_examples:
        parts[f"tokenized examples ({n_examples})"] = TOKEN_BYTES * n_examples * max_length
    kind = estimator if form == "full" else f"{estimator}, row and column sums only"
    what = _what(shape, f"Fisher ({kind}) of") + (" (loaded already)" if weights_loaded else "")
    return MemoryEstimate(what, parts)


def parse_bytes(text: str) -> int:
    """'8G', '512M', '1.5GiB', '1000000' -> bytes (binary units); FwsvdError on anything else."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGT]?)(?:I?B)?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise FwsvdError(f"{MEMORY_LIMIT_ENV}={text!r} is not a memory size: give bytes, or a number with "
                         "K, M, G or T (for example 8G or 512M).")
    value = float(match.group(1)) * _UNITS[match.group(2).upper()]
    if value < 1:
        raise FwsvdError(f"{MEMORY_LIMIT_ENV}={text!r} must be at least one byte.")
    return int(value)


def memory_limit_override() -> int | None:
    """The byte count FWSVD_MEMORY_LIMIT sets in place of the machine's available memory, if set."""
    text = os.environ.get(MEMORY_LIMIT_ENV, "").strip()
    return parse_bytes(text) if text else None


def _read_int(path: Path) -> int | None:
    """An integer file (cgroup); None for 'max', unreadable or absent files."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _meminfo_available() -> int | None:
    """MemAvailable of /proc/meminfo: free memory plus the page cache the kernel can drop."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _stat_value(path: Path, key: str) -> int:
    """One counter of a cgroup memory.stat file; 0 when absent."""
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _cgroup_dirs() -> list[tuple[int, Path]]:
    """This process's memory cgroup folders, innermost first, as (cgroup version, folder)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        if controllers == "":  # cgroup v2: one unified hierarchy
            root, version = Path("/sys/fs/cgroup"), 2
        elif "memory" in controllers.split(","):
            root, version = Path("/sys/fs/cgroup/memory"), 1
        else:
            continue
        # walk up to the root: a parent's limit binds too; in a container the path may not exist below root
        path = root / rel.lstrip("/")
        dirs = [p for p in (path, *path.parents) if p.is_relative_to(root)]
        found += [(version, d) for d in dirs if d.is_dir()]
    return found


def _cgroup_available() -> int | None:
    """Headroom under the tightest cgroup memory limit (limit minus usage, reclaimable file cache not counted)."""
    best = None
    for version, folder in _cgroup_dirs():
        if version == 2:
            limit, usage = _read_int(folder / "memory.max"), _read_int(folder / "memory.current")
            cache = _stat_value(folder / "memory.stat", "inactive_file")
        else:
            limit, usage = _read_int(folder / "memory.limit_in_bytes"), _read_int(folder / "memory.usage_in_bytes")
            cache = _stat_value(folder / "memory.stat", "total_inactive_file")
        if limit is None or usage is None or limit >= 2**60:  # 'max' or v1's "no limit" near 2**63
            continue
        room = max(0, limit - max(0, usage - cache))
        best = room if best is None else min(best, room)
    return best


def _cpu_available() -> int:
    """What this process can still allocate on the CPU: the machine's and its cgroup's headroom, the smaller."""
    figures = [f for f in (_meminfo_available(), _cgroup_available()) if f is not None]
    if not figures and hasattr(os, "sysconf"):  # non-Linux: free pages, or failing that all physical memory
        for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
            try:
                figures.append(os.sysconf(name) * os.sysconf("SC_PAGE_SIZE"))
                break
            except (ValueError, OSError, AttributeError):
                continue
    if not figures:
        raise FwsvdError(f"Cannot tell how much memory this machine ({sys.platform}) has; set {MEMORY_LIMIT_ENV}.")
    return min(figures)


def available_bytes(device: str | torch.device) -> int:
    """Memory the process can still get on `device`; FWSVD_MEMORY_LIMIT replaces the measured figure."""
    override = memory_limit_override()
    if override is not None:
        return override
    device = torch.device(device)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type in ("cpu", "mps"):  # Apple's GPU shares the machine's memory
        return _cpu_available()
    raise FwsvdError(f"Cannot tell how much memory device {device} has; set {MEMORY_LIMIT_ENV} to check against.")


def _where(device: torch.device) -> str:
    source = f" (set by {MEMORY_LIMIT_ENV})" if os.environ.get(MEMORY_LIMIT_ENV, "").strip() else ""
    name = "the GPU " + str(device) if device.type == "cuda" else "this machine (CPU)"
    return f"{name}{source}"


def fisher_options(estimate: MemoryEstimate | None = None, batch_hint: str = "") -> list[str]:
    """What reduces the Fisher's peak memory, the largest savings first; `batch_hint` names a batch size that fits."""
    tokens = sum(size for name, size in estimate.parts.items() if name.startswith("tokenized")) if estimate else 0
    many_tokens = estimate is not None and tokens > 0.25 * estimate.total
    options = [
        batch_hint or "a smaller batch size (the layer inputs, gradients and activations kept grow with it)",
        "a shorter max length (the same parts grow with it)",
        "the low-memory Fisher (--fisher-form profiles: each layer's row and column sums only, enough for FWSVD)",
        "a GPU with more memory, or a machine with more RAM",
    ]
    if many_tokens:
        options.insert(0, "fewer examples (their tokens take a large share)")
    else:  # people reach for this first; it does not help
        options.append("fewer examples would barely help: only one batch at a time is in memory")
    return options


def load_options() -> list[str]:
    """What makes a model that does not fit loadable."""
    return ["a smaller model (fewer or narrower layers)", "half precision weights (float16 or bfloat16 checkpoint)",
            "a GPU with more memory, or a machine with more RAM"]


def require_fits(estimate: MemoryEstimate, device: str | torch.device, options: list[str] | None = None,
                 headroom: float = 0.9) -> None:
    """Raise InsufficientMemoryError when the estimate exceeds `headroom` of what `device` has available."""
    device = torch.device(device)
    available = available_bytes(device)
    if estimate.total <= headroom * available:
        return
    if options is None:
        options = fisher_options(estimate) if "Fisher storage" in estimate.parts else load_options()
    lines = [
        f"Not enough memory: {estimate.describe()}.",
        f"Available on {_where(device)}: {format_bytes(available)} (at most {headroom:.0%} of it may be used).",
    ]
    if options:
        lines.append("Options: " + "; ".join(options) + ".")
    raise InsufficientMemoryError("\n".join(lines))


def check_model_load(config, device: str | torch.device = "cpu", dtype=None,
                     pickled_checkpoint: bool = False) -> MemoryEstimate:
    """Refuse a load that does not fit; the model is read on the CPU, then moved to a GPU if asked."""
    estimate = estimate_model_load(config, dtype, pickled_checkpoint)
    require_fits(estimate, "cpu", load_options())
    device = torch.device(device)
    if device.type == "cuda":
        on_gpu = MemoryEstimate(estimate.what + " on the GPU", {"weights": estimate.parts["weights"]})
        require_fits(on_gpu, device, load_options())
    return estimate


def _largest_fitting_batch(shape: ModelShape, dtype, batch_size: int, max_length: int, estimator: str,
                           n_examples: int | None, weights_loaded: bool, budget: float, form: str = "full") -> int:
    """The largest batch size below `batch_size` whose estimate is within `budget` bytes; 0 if none."""
    low, high = 0, batch_size - 1  # the estimate grows with the batch size: bisect, low always fits
    while low < high:
        mid = (low + high + 1) // 2
        if _fisher_estimate(shape, dtype, mid, max_length, estimator, n_examples, weights_loaded, form).total <= budget:
            low = mid
        else:
            high = mid - 1
    return low


def check_fisher(config, device: str | torch.device, batch_size: int, max_length: int,
                 estimator: str = "per-sample", dtype=None, n_examples: int | None = None,
                 weights_loaded: bool = True, headroom: float = 0.9, form: str = "full") -> MemoryEstimate:
    """Refuse a Fisher that does not fit on `device`, naming the batch size that would; by default the
    model is taken to be loaded already (its weights are no longer in what is available)."""
    _check_fisher_args(estimator, batch_size, max_length)
    shape = model_shape(config)
    dtype = config if dtype is None else dtype
    estimate = _fisher_estimate(shape, dtype, batch_size, max_length, estimator, n_examples, weights_loaded, form)
    budget = headroom * available_bytes(device)
    if estimate.total <= budget:
        return estimate
    fitting = _largest_fitting_batch(shape, dtype, batch_size, max_length, estimator, n_examples, weights_loaded,
                                     budget, form)
    if fitting:
        hint = f"a smaller batch size: {fitting} fits at max length {max_length}"
    else:
        one = _fisher_estimate(shape, dtype, 1, max_length, estimator, n_examples, weights_loaded, form)
        hint = f"a smaller batch size is not enough: even batch size 1 needs {format_bytes(one.total)}"
    require_fits(estimate, device, fisher_options(estimate, hint), headroom)
    return estimate
