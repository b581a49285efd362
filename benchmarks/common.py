"""Shared helpers of the benchmark scripts: timing, peak memory, writing JSON and markdown."""
from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fwsvd_core.analysis.markdown import markdown_table  # noqa: E402  (the scripts import it from here)


def timed(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> dict[str, float]:
    """Median and best wall time of `fn` over `repeats` runs, after `warmup` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "best_s": min(times), "repeats": repeats}


def timed_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """`fn`'s value and the wall seconds of that one call."""
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def peak_rss_mb() -> float:
    """The process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def write_report(out: Path, title: str, command: str, sections: dict[str, list[dict]], notes: list[str],
                 data: dict) -> None:
    """`out`.json with everything, `out`.md for a person."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(data, indent=1, default=str))
    text = [f"# {title}", "", f"Made by `{command}`", ""]
    for heading, rows in sections.items():
        text += [f"## {heading}", "", markdown_table(rows), ""]
    text += notes
    out.with_suffix(".md").write_text("\n".join(text) + "\n")
    print("\n".join(text))


def device_description(device) -> str:
    """Which device a benchmark ran on, as a reader needs it: the GPU's name and memory, or the CPU."""
    import platform

    import torch

    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"cuda ({props.name}, {props.total_memory / 2**30:.0f} GiB)"
    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def calibrate(session, train, fisher_samples: int, kronecker_iterations: int, max_length: int = 128):
    """Give `session` what every method needs, from `fisher_samples` training examples of at most `max_length`
    tokens: the Fisher, calibration activations (from at most 256) and the Kronecker factors (returned)."""
    from fwsvd_core.estimation.activations import estimate_activation_stats
    from fwsvd_core.estimation.fisher import estimate_fisher
    from fwsvd_core.estimation.kronecker import estimate_kronecker

    model, tokenizer, fingerprint = session.model, session.loaded.tokenizer, session.loaded.fingerprint
    session.set_fisher(estimate_fisher(model, tokenizer, train, fisher_samples, max_length=max_length,
                                       fingerprint=fingerprint))
    session.set_activations(estimate_activation_stats(model, tokenizer, train, min(fisher_samples, 256),
                                                      max_length=max_length, fingerprint=fingerprint))
    factors = estimate_kronecker(model, tokenizer, train, fisher_samples, iterations=kronecker_iterations,
                                 max_length=max_length, fingerprint=fingerprint)
    session.set_kronecker(factors)
    return factors
