"""Latency break-even ranks: the search on deterministic fake timings, the on-disk cache, a real measurement."""
import json

import pytest
import torch

from fwsvd_core.analysis.latency import (
    break_even_table,
    crossing_rank,
    latency_break_even,
    parameter_break_even,
    rank_grid,
)
from fwsvd_core.cache import cache_root
from fwsvd_core.errors import RankError


def linear_timer(dense: float, fixed: float, per_rank: float, calls: list | None = None):
    """Fake timings: the dense product takes `dense`, rank r takes fixed + per_rank * r (what two products cost)."""
    def timer(rank: int) -> float:
        if calls is not None:
            calls.append(rank)
        return dense if rank == 0 else fixed + per_rank * rank
    return timer


def test_the_break_even_is_where_the_factorized_time_meets_the_dense_time():
    # 10 + 0.5 r <= 100 up to r = 180
    assert latency_break_even(384, 384, timer=linear_timer(100, 10, 0.5), step=1) == 180
    assert latency_break_even(384, 1536, timer=linear_timer(100, 10, 0.5), step=1) == 180
    assert latency_break_even(384, 384, tokens=7, timer=linear_timer(100, 10, 0.5), step=8) == 176  # a multiple of 8
    assert latency_break_even(64, 64, timer=linear_timer(100, 1, 0.01), step=1) == 64  # never slower: full rank
    assert latency_break_even(64, 32, tokens=3, timer=linear_timer(100, 150, 0.01), step=1) == 0  # always slower


def test_noisy_points_do_not_move_the_crossing_much():
    times = {0: 100.0, **{r: 10 + 0.5 * r for r in rank_grid(384, 8)}}
    times[192] *= 3  # one timing hit by load from another process
    assert crossing_rank(times, 384) == 180
    assert rank_grid(384, 8) == [48, 96, 144, 192, 240, 288, 336, 384] and rank_grid(3, 8) == [1, 2, 3]


def test_each_rank_is_timed_in_turns_with_the_dense_product():
    calls = []
    latency_break_even(96, 48, tokens=5, timer=linear_timer(100, 10, 0.5, calls), rounds=3, points=4)
    assert calls == [0, 12, 24, 36, 48] * 3


def test_it_is_measured_once_per_device_shape_and_tokens(tmp_path):
    first, second = [], []
    assert latency_break_even(384, 384, tokens=128, timer=linear_timer(100, 10, 0.5, first), step=1) == 180
    # the same question again: answered from the cache, the timer not called
    assert latency_break_even(384, 384, tokens=128, timer=linear_timer(100, 10, 0.25, second), step=1) == 180
    assert first and not second
    entries = list((cache_root() / "latency").glob("*.json"))
    assert len(entries) == 1 and json.loads(entries[0].read_text())["rank"] == 180
    # another number of tokens, shape or runtime is another measurement; refresh measures again
    assert latency_break_even(384, 384, tokens=256, timer=linear_timer(100, 10, 0.25, second), step=1) == 360
    assert latency_break_even(384, 384, tokens=128, timer=linear_timer(100, 10, 0.25), step=1, refresh=True) == 360
    assert latency_break_even(384, 384, tokens=128, timer=linear_timer(1, 1, 1), step=1) == 360
    # a damaged entry is measured again
    for entry in (cache_root() / "latency").glob("*.json"):
        entry.write_text("{not json")
    assert latency_break_even(384, 384, tokens=128, timer=linear_timer(100, 10, 0.5), step=1) == 180


def test_the_table_puts_the_parameter_break_even_beside_each_runtime_and_token_count():
    rows = break_even_table([(384, 384), (384, 1536), (384, 384)], tokens=(1, 64), rounds=1, points=2,
                            timer=linear_timer(100, 10, 0.5), step=1)
    assert [(r["in"], r["out"]) for r in rows] == [(384, 384), (384, 1536)]
    assert rows[1]["parameter break-even"] == parameter_break_even(384, 1536) == 307
    assert rows[0]["torch, 1 tokens"] == rows[0]["torch, 64 tokens"] == 180


@pytest.mark.parametrize("runtime", ["torch", "onnxruntime"])
def test_a_real_measurement_gives_a_rank_within_the_layer(runtime):
    rank = latency_break_even(32, 48, "cpu", torch.float32, tokens=4, runtime=runtime, rounds=2, points=3)
    assert 0 <= rank <= 32 and (rank % 8 == 0 or rank == 32)


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(RankError, match="positive sizes"):
        latency_break_even(0, 384)
    with pytest.raises(RankError, match="Unknown runtime 'tensorrt'"):
        latency_break_even(384, 384, runtime="tensorrt")
    with pytest.raises(RankError, match="CPU in float32"):
        latency_break_even(8, 8, dtype=torch.bfloat16, runtime="onnxruntime")


def test_torch_is_timed_with_the_threads_asked_for(monkeypatch):
    import fwsvd_core.analysis.latency as latency

    seen = []
    monkeypatch.setattr(latency, "_torch_runner", lambda *a: lambda rank: lambda: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    timer = latency.layer_timer(16, 16, tokens=2, runtime="torch", threads=before + 1)
    timer(0)
    assert set(seen) == {before + 1} and torch.get_num_threads() == before


def test_a_compressed_model_is_merged_where_its_measured_break_even_says_so(tiny_models):
    from fwsvd_core.analysis.latency import merged_where_slow
    from fwsvd_core.compression.rank_table import rank_table_of
    from fwsvd_core.compression.ranks import uniform_ranks
    from fwsvd_core.compression.session import CompressionSession
    from fwsvd_core.loading import load_model

    session = CompressionSession(load_model(tiny_models["bert"], device="cpu"))
    model = session.compress("svd", uniform_ranks(session.layers, 0.25))  # rank 8 everywhere
    # fake timings with a break-even of 4 (10 + 22.5 r <= 100): every factorized layer is slower than dense
    fast = merged_where_slow(model, tokens=9, timer=linear_timer(100, 10, 22.5), step=1)
    assert {row.form for row in rank_table_of(fast).layers.values()} == {"dense"}
    assert merged_where_slow(model, tokens=10, timer=linear_timer(100, 10, 0.5), step=1) is model  # all fast enough


def test_a_measured_break_even_is_read_without_timing_anything():
    from fwsvd_core.analysis.latency import measured_break_even

    assert measured_break_even(48, 40, tokens=16) is None  # not measured yet: nothing is timed here
    times = {0: 1.0}
    rank = latency_break_even(48, 40, tokens=16, timer=lambda r: times.get(r, 0.2 + 0.02 * r), rounds=1, step=1)
    assert measured_break_even(48, 40, tokens=16, rounds=1, step=1) == rank
    assert measured_break_even(48, 40, tokens=32, rounds=1, step=1) is None
