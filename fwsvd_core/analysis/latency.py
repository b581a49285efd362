"""Latency break-even ranks: the rank above which a factorized layer up(down(x)) is slower than the dense x W^T.

Measured per device, runtime (PyTorch eager or ONNX Runtime), dtype, layer shape and tokens per call, once: the
answer is cached on disk. The parameter break-even (in*out / (in+out)) says where factorizing stops saving memory;
this one says where it stops saving time, which can be lower (two thin products run less efficiently than one,
and each is one more operation to launch and, with several threads, to split and join).
"""
from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Iterable
from functools import partial
from pathlib import Path

import torch

from fwsvd_core.cache import cache_key, cache_root, store_bytes
from fwsvd_core.errors import RankError

RUNTIMES = ("torch", "onnxruntime")
Timer = Callable[[int], float]  # seconds of one product at `rank`; rank 0 is the dense product
COPIES = 6  # layers of one shape per timed ONNX Runtime call at few tokens (as many as MiniLM has)


def parameter_break_even(in_features: int, out_features: int) -> int:
    """Largest rank whose factors r*(in+out) hold fewer parameters than the dense in*out."""
    return (in_features * out_features - 1) // (in_features + out_features)


def device_label(device: str | torch.device, threads: int | None = None) -> str:
    """The device as the cache tells measurements apart: the GPU's name, or the CPU's model and thread count."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    threads = threads or torch.get_num_threads()
    return f"cpu:{_cpu_model()}:{os.cpu_count()} cores:{threads} threads"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def rank_grid(max_rank: int, points: int = 8) -> list[int]:
    """`points` ranks spread evenly up to `max_rank` (the last is `max_rank`), without repeats."""
    return sorted({max(1, round(max_rank * (i + 1) / points)) for i in range(points)})


def best_times(timer: Timer, ranks: list[int], rounds: int) -> dict[int, float]:
    """The best of `rounds` timings of the dense product (rank 0) and of each rank, taken in turns, so that a burst
    of load on a shared machine hits every rank alike."""
    times: dict[int, list[float]] = {rank: [] for rank in [0, *ranks]}
    for _ in range(rounds):
        for rank in times:
            times[rank].append(timer(rank))
    return {rank: min(values) for rank, values in times.items()}


def crossing_rank(times: dict[int, float], max_rank: int, step: int = 1) -> int:
    """Where the line through the factorized timings (Theil-Sen: medians of slopes, robust to a few noisy points)
    meets the dense time (`times[0]`), rounded down to a multiple of `step` and kept within [0, max_rank]."""
    import numpy as np

    dense = times[0]
    ranks = np.array([r for r in times if r > 0], dtype=float)
    seconds = np.array([times[int(r)] for r in ranks])
    if len(ranks) == 1:
        slope = seconds[0] / ranks[0]
    else:
        i, j = np.triu_indices(len(ranks), k=1)
        slope = float(np.median((seconds[j] - seconds[i]) / (ranks[j] - ranks[i])))
    intercept = float(np.median(seconds - slope * ranks))
    if slope <= 0:  # no cost grows with the rank: every rank is as fast as its smallest
        return max_rank if intercept <= dense else 0
    rank = min(max_rank, int((dense - intercept) / slope))
    return max(0, rank if rank == max_rank else rank - rank % step)


def layer_timer(in_features: int, out_features: int, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32, tokens: int = 128, runtime: str = "torch",
                threads: int | None = None) -> Timer:
    """A timer of the real products on random weights: seconds per call (a loop of calls lasting >= 1 ms)."""
    device = torch.device(device)
    if runtime == "onnxruntime":
        if device.type != "cpu" or dtype != torch.float32:
            raise RankError("The ONNX Runtime latency break-even is measured on the CPU in float32 only.")
        run = _onnxruntime_runner(in_features, out_features, tokens, threads)
    else:
        run = _torch_runner(in_features, out_features, device, dtype, tokens)
    loops: dict[int, int] = {}

    def timer(rank: int) -> float:
        call = run(rank)
        if rank not in loops:
            call()  # warm-up: allocation, weight packing
            start = time.perf_counter()
            call()
            loops[rank] = max(1, int(1e-3 / max(time.perf_counter() - start, 1e-7)))
        start = time.perf_counter()
        for _ in range(loops[rank]):
            call()
        return (time.perf_counter() - start) / loops[rank]

    if runtime == "torch" and threads and threads != torch.get_num_threads():
        return _with_torch_threads(timer, threads)
    return timer


def _with_torch_threads(timer: Timer, threads: int) -> Timer:
    """`timer` run with torch's intra-op threads set to `threads` (and set back after)."""
    def timed(rank: int) -> float:
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return timer(rank)
        finally:
            torch.set_num_threads(before)
    return timed


def _torch_runner(in_f: int, out_f: int, device: torch.device, dtype: torch.dtype, tokens: int):
    from torch import nn

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, in_f, generator=generator).to(device, dtype)
    made: dict[int, Callable[[], object]] = {}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def run(rank: int) -> Callable[[], object]:
        if rank not in made:
            if rank == 0:
                model: nn.Module = nn.Linear(in_f, out_f)
            else:
                model = nn.Sequential(nn.Linear(in_f, rank, bias=False), nn.Linear(rank, out_f))
            model = model.to(device, dtype).eval().requires_grad_(False)

            def call(model=model):
                with torch.inference_mode():
                    model(x)
                sync()
            made[rank] = call
        return made[rank]
    return run


def _onnxruntime_runner(in_f: int, out_f: int, tokens: int, threads: int | None):
    import numpy as np
    import onnxruntime
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    x = rng.standard_normal((tokens, in_f)).astype(np.float32)
    made: dict[int, Callable[[], object]] = {}

    def init(name: str, *shape: int):
        return numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32), name)

    def run(rank: int) -> Callable[[], object]:
        # the graph the torch exporter writes for nn.Linear on [tokens, in]: MatMul with the transposed weight, Add;
        # COPIES such layers with their own weights in one graph, so that the fixed cost of a run() call (Python,
        # binding) does not drown the difference between one product and two
        if rank not in made:
            nodes, weights, outputs = [], [], []
            for k in range(COPIES if tokens <= 1024 else 1):
                if rank == 0:
                    weights.append(init(f"w{k}", in_f, out_f))
                    nodes.append(helper.make_node("MatMul", ["x", f"w{k}"], [f"h{k}"]))
                else:
                    weights += [init(f"d{k}", in_f, rank), init(f"u{k}", rank, out_f)]
                    nodes += [helper.make_node("MatMul", ["x", f"d{k}"], [f"t{k}"]),
                              helper.make_node("MatMul", [f"t{k}", f"u{k}"], [f"h{k}"])]
                weights.append(init(f"b{k}", out_f))
                nodes.append(helper.make_node("Add", [f"h{k}", f"b{k}"], [f"y{k}"]))
                outputs.append(helper.make_tensor_value_info(f"y{k}", TensorProto.FLOAT, ["n", out_f]))
            graph = helper.make_graph(nodes, "layers", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", in_f])],
                                      outputs, weights)
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads or torch.get_num_threads()
            session = onnxruntime.InferenceSession(model.SerializeToString(), options,
                                                   providers=["CPUExecutionProvider"])
            made[rank] = partial(session.run, None, {"x": x})
        return made[rank]
    return run


def _cache_file(**parts) -> Path:
    return cache_root() / "latency" / f"{cache_key(**parts)}.json"


def latency_break_even(in_features: int, out_features: int, device: str | torch.device = "cpu",
                       dtype: torch.dtype = torch.float32, tokens: int = 128, *, runtime: str = "torch",
                       threads: int | None = None, rounds: int = 7, points: int = 8, step: int = 8,
                       timer: Timer | None = None, refresh: bool = False) -> int:
    """The largest rank (a multiple of `step`, or min(in, out)) at which y = up(down(x)) on `tokens` rows is not
    slower than the dense product on this device and runtime; 0 when factorizing costs time at every rank.

    The factorized product is timed at `points` ranks, the dense one beside them, each the best of `rounds`; the
    rank is where the line through the factorized timings meets the dense time. Measured once and cached (per
    device, runtime, threads, dtype, shape, tokens, library versions); `refresh` measures again. `timer` replaces
    the measurement (seconds of one call at a rank, 0 meaning dense).
    """
    if min(in_features, out_features, tokens, step, rounds, points) < 1:
        raise RankError(f"A latency break-even needs positive sizes, got in={in_features}, out={out_features}, "
                        f"tokens={tokens}, step={step}, rounds={rounds}, points={points}.")
    if runtime not in RUNTIMES:
        raise RankError(f"Unknown runtime {runtime!r}: choose one of {', '.join(RUNTIMES)}.")
    if runtime == "onnxruntime" and (torch.device(device).type != "cpu" or dtype != torch.float32):
        raise RankError("The ONNX Runtime latency break-even is measured on the CPU in float32 only.")
    max_rank = min(in_features, out_features)
    path = _entry(in_features, out_features, device, dtype, tokens, runtime, threads, rounds, points, step)
    if not refresh and (cached := _read_cached(path)) is not None and 0 <= cached <= max_rank:
        return cached
    timer = timer or layer_timer(in_features, out_features, device, dtype, tokens, runtime, threads)
    rank = crossing_rank(best_times(timer, rank_grid(max_rank, points), rounds), max_rank, step)
    store_bytes(path, json.dumps({"rank": rank, "in": in_features, "out": out_features, "tokens": tokens,
                                  "runtime": runtime, "device": device_label(device, threads)}).encode())
    return rank


def _entry(in_features: int, out_features: int, device: str | torch.device, dtype: torch.dtype, tokens: int,
           runtime: str, threads: int | None, rounds: int, points: int, step: int) -> Path:
    """Where a latency break-even is cached: per device, runtime, threads, dtype, shape, tokens, library versions."""
    versions = {"torch": torch.__version__}
    if runtime == "onnxruntime":
        import onnxruntime

        versions["onnxruntime"] = onnxruntime.__version__
    return _cache_file(kind="latency break-even", device=device_label(device, threads), runtime=runtime,
                       dtype=str(dtype), shape=[in_features, out_features], tokens=tokens, rounds=rounds,
                       points=points, step=step, versions=versions)


def measured_break_even(in_features: int, out_features: int, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, tokens: int = 128, *, runtime: str = "torch",
                        threads: int | None = None, rounds: int = 7, points: int = 8, step: int = 8) -> int | None:
    """The latency break-even measured before with these settings (`latency_break_even`), or None: nothing is
    timed, so a page can show it at once where it is known."""
    cached = _read_cached(_entry(in_features, out_features, device, dtype, tokens, runtime, threads, rounds, points,
                                 step))
    return cached if cached is not None and 0 <= cached <= min(in_features, out_features) else None


def _read_cached(path: Path) -> int | None:
    try:
        value = json.loads(path.read_text())["rank"]
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or damaged: measured again and rewritten
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def break_even_table(shapes: Iterable[tuple[int, int]], device: str | torch.device = "cpu",
                     dtype: torch.dtype = torch.float32, tokens: Iterable[int] = (128,),
                     runtimes: Iterable[str] = ("torch",), **options) -> list[dict]:
    """One row per (in, out) shape: its parameter break-even rank beside the latency break-even of each runtime and
    number of tokens (columns named like 'torch, 128 tokens')."""
    rows = []
    for in_f, out_f in dict.fromkeys(shapes):
        row: dict = {"in": in_f, "out": out_f, "max rank": min(in_f, out_f),
                     "parameter break-even": parameter_break_even(in_f, out_f)}
        for runtime in runtimes:
            for n in tokens:
                row[f"{runtime}, {n} tokens"] = latency_break_even(in_f, out_f, device, dtype, n, runtime=runtime,
                                                                   **options)
        rows.append(row)
    return rows


def merged_where_slow(compressed, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                      tokens: int = 128, *, runtime: str = "torch", **options):
    """`compressed` with each factorized layer above its measured latency break-even (on this device and runtime,
    at `tokens` per call) stored as one dense product: what to deploy there (`compression.deploy.merge_slow_layers`)."""
    from fwsvd_core.compression.deploy import merge_slow_layers

    return merge_slow_layers(compressed, lambda i, o: latency_break_even(i, o, device, dtype, tokens, runtime=runtime,
                                                                         **options))
