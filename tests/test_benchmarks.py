"""The quick mode of each benchmark script runs, so none of them rots."""
import json
import subprocess
import sys

import pytest
from conftest import REPO

pytestmark = pytest.mark.slow


def run(script: str, *args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)


def test_methods_report_quick(tiny_models, glue_dir, tmp_path):
    out = tmp_path / "methods"
    done = run("methods_report.py", "--quick", "--model", str(tiny_models["bert"]), "--task", "sst2",
               "--data-dir", str(glue_dir), "--budgets", "0.4", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    methods = {r["method"] for r in report["rows"]}
    assert {"dense", "svd", "fwsvd-input", "asvd", "svd-llm", "tfwsvd-als", "tfwsvd-em"} <= methods
    assert {r["allocator"] for r in report["rows"] if r["method"] != "dense"} == {"uniform", "spectral", "sensitivity"}
    assert "## Best allocator" in out.with_suffix(".md").read_text()


def test_speed_quick(tiny_models, glue_dir, tmp_path):
    out = tmp_path / "speed"
    done = run("speed.py", "--quick", "--model", str(tiny_models["bert"]), "--data-dir", str(glue_dir), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    assert len(report["targets"]) == 5 and all(isinstance(t["met"], bool) for t in report["targets"])
    assert [r["model"] for r in report["inference"]] == ["dense", "svd 0.5", "svd 0.33", "svd 0.15"]
    assert report["fisher"][0]["x loop"] > 0 and report["recompression"][0]["recompress ms (median)"] > 0
    assert "## Targets" in out.with_suffix(".md").read_text()
    assert report["device"].startswith("cpu (") and "device cpu (" in out.with_suffix(".md").read_text()


def test_scale_quick(glue_dir, tmp_path):
    out = tmp_path / "scale"
    done = run("scale.py", "--quick", "--data-dir", str(glue_dir), "--fisher-examples", "4", "--dtype", "bfloat16",
               "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert [r["model"] for r in rows] == ["tiny", "minilm"]
    assert {(r["device"], r["dtype"]) for r in rows} == {("cpu", "bfloat16")}
    assert "Device: cpu (" in out.with_suffix(".md").read_text()
    assert rows[1]["params (M)"] > rows[0]["params (M)"] and rows[1]["peak RSS after Fisher MB"] > 0


def test_quality_quick(tiny_models, glue_dir, tmp_path):
    out = tmp_path / "results"
    done = run("quality.py", "--quick", "--model", str(tiny_models["bert"]), "--tasks", "sst2", "--budgets", "0.4",
               "--data-dir", str(glue_dir), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())["sst2"]
    methods = {r["method"] for r in report["rows"]}
    plain = {"svd", "fwsvd-input", "fwsvd-output", "fwsvd-both", "tfwsvd-als", "asvd", "svd-llm", "kfac", "gfwsvd"}
    assert plain | {f"{m}+ft" for m in plain} <= methods  # every method also fine-tuned
    assert {r["allocator"] for r in report["rows"]} >= {"uniform", "spectral", "sensitivity"}
    gain = report["allocation gains"][0]
    assert gain["gain"] == pytest.approx(gain["its score"] - gain["best uniform FWSVD"], abs=1e-3)
    assert len(report["ablation"]) == 10 and report["findings"]
    # GFWSVD as published against the best FWSVD of any allocator, without fine-tuning
    untuned = [r for r in report["rows"] if not r["method"].endswith("+ft")]
    best_fwsvd = max(r["accuracy"] for r in untuned if r["method"].startswith("fwsvd"))
    gfwsvd = next(r["accuracy"] for r in untuned if r["method"] == "gfwsvd" and r["allocator"] == "uniform")
    comparison = report["kronecker comparison"][0]
    assert comparison["GFWSVD - FWSVD"] == pytest.approx(gfwsvd - best_fwsvd, abs=1e-3)
    assert any("GFWSVD (uniform ranks, as published)" in line for line in report["findings"])
    for figure in ("mismatch", "scores", "ablation"):
        page = (tmp_path / f"results_sst2_{figure}.html").read_text()
        assert 'src="plotly.min.js"' in page and "cdn.plot.ly" not in page  # works offline
    assert (tmp_path / "plotly.min.js").stat().st_size > 1_000_000
    # the figures can be drawn again from the report's JSON alone
    (tmp_path / "results_sst2_scores.html").unlink()
    assert run("quality.py", "--figures-only", "--out", str(out)).returncode == 0
    assert "fwsvd-input (uniform)" in (tmp_path / "results_sst2_scores.html").read_text()
    # the findings can be written again from the report's JSON alone, and come out the same
    before = out.with_suffix(".md").read_text()
    assert run("quality.py", "--findings-only", "--out", str(out)).returncode == 0
    assert out.with_suffix(".md").read_text() == before
    assert json.loads(out.with_suffix(".json").read_text())["sst2"]["findings"] == report["findings"]
    # a second run of another task merges into the same report instead of replacing it
    done = run("quality.py", "--quick", "--model", str(tiny_models["bert"]), "--tasks", "cola", "--budgets", "0.4",
               "--finetune-budgets", "0.4", "--data-dir", str(glue_dir), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(json.loads(out.with_suffix(".json").read_text())) == {"sst2", "cola"}
    text = out.with_suffix(".md").read_text()
    assert text.index("## sst2") < text.index("## cola")


def test_runtime_quick(tiny_models, tmp_path):
    out = tmp_path / "runtime"
    done = run("runtime.py", "--quick", "--model", str(tiny_models["bert"]), "--rank-ratios", "0.25,0.5",
               "--batches", "1,4", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    rows = report["rows"]
    for runtime in ("eager", "compile", "onnxruntime"):
        for batch in (1, 4):
            models = {r["model"] for r in rows if r["runtime"] == runtime and r["batch"] == batch}
            assert {"dense", "r0.25 factorized", "r0.25 merged", "r0.25 fast", "r0.5 fast"} <= models, (runtime, batch)
    dense = [r for r in rows if r["model"] == "dense"]
    assert len(dense) == 6 and all(r["x dense speed"] == 1 and r["best ms"] > 0 for r in dense)
    assert all(r["param ratio"] < 1 for r in rows if r["form"] == "factorized")
    table = report["break_even"]
    assert {(r["in"], r["out"]) for r in table} == {(32, 32), (32, 64), (64, 32)}
    for r in table:
        assert r["parameter break-even"] == (r["in"] * r["out"] - 1) // (r["in"] + r["out"])
        assert all(0 <= r[f"{rt}, {n} tokens"] <= r["max rank"] for rt in ("torch", "onnxruntime") for n in (8, 32))
    graphs = {g["model"]: g for g in report["onnx_graphs"]}
    assert graphs["r0.25 factorized"]["MatMul"] > graphs["dense"]["MatMul"] == graphs["r0.25 merged"]["MatMul"]
    text = out.with_suffix(".md").read_text()
    assert "intra_op_num_threads" in text and "shared" in text and "## Latency break-even rank" in text


def test_allocation_benchmark_quick(tmp_path):
    """Issue 25, 6: the exact allocator against greedy on decoder-shaped layers, both within the budget."""
    out = tmp_path / "allocation"
    done = run("allocation.py", "--blocks", "1", "--ratios", "0.5", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = json.loads(out.with_suffix(".json").read_text())["rows"]
    assert {r["curves"] for r in rows} == {"spectral", "sensitivity"} and all(r["layers"] == 7 for r in rows)
    for r in rows:
        assert r["greedy unspent"] >= 0 and r["exact unspent"] >= 0
        assert float(r["exact loss"]) <= float(r["greedy loss"]) * (1 + 1e-6)


def test_speed_limit_quick(glue_dir, tmp_path):
    """Issue 25, 3: every statistic timed on the same windows as a plain forward and backward pass."""
    out = tmp_path / "speed_limit"
    done = run("speed_limit.py", "--quick", "--data-dir", str(glue_dir), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["pass"].split(" (")[0]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    assert {"plain forward + backward", "K-FAC factors", "Fisher row and column profiles", "perplexity evaluation",
            "nearest Kronecker: K-FAC + 1 power iteration"} <= set(rows)
    assert rows["plain forward + backward"]["of the plain pass"] == 1
    assert all(r["seconds"] > 0 and r["of the plain pass"] > 0 for r in rows.values())


def test_scale_kfac_quick(glue_dir, tmp_path):
    """Issue 25, 4: a tiny decoder planned, its first pass and each layer shape's factorization measured, and compressed
    end to end on the command line; 70B planned for this machine (it does not load here) with the memory one block per
    pass would need."""
    out = tmp_path / "scale_kfac"
    done = run("scale_kfac.py", "--quick", "--data-dir", str(glue_dir), "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    rows = {r["size"]: r for r in json.loads(out.with_suffix(".json").read_text())["rows"]}
    tiny, big = rows["tiny"], rows["70b"]
    assert tiny["first pass s"] > 0 and tiny["factorize s (est.)"] >= 0 and "pass(es) of" in tiny["plan"]
    assert big["layers"] == 560 and "first pass s" not in big and "GiB" in big["memory for one block per pass"]
    (whole,) = json.loads(out.with_suffix(".json").read_text())["end to end"]  # the tiny decoder through the CLI
    assert whole["size"] == "tiny" and whole["end to end s"] > 0 and "Kronecker factors: 1 examples" in \
        whole["the command line said"]


def test_accumulation_quick(tiny_lm_dir, glue_dir, tmp_path):
    """Issue 25, 1: float32 running sums of the K-FAC Gram matrices against float64 ones, beside the sample's noise."""
    out = tmp_path / "accumulation"
    done = run("accumulation.py", "--quick", "--model", str(tiny_lm_dir), "--data-dir", str(glue_dir), "--out",
               str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(out.with_suffix(".json").read_text())
    summary = {r["quantity"]: float(r["largest"]) for r in report["summary"]}
    assert summary["A float32 vs float64"] < 1e-5 and summary["B float32 vs float64"] < 1e-5
    assert summary["A float32 vs float64"] < 1e-3 * summary["A half vs half (noise)"]
    memory = {r["running sums"]: r["LLaMA-7B K-FAC statistics on this machine"] for r in report["memory"]}
    assert set(memory) == {"float64", "float32"} and "passes (one block's statistics" in memory["float32"]
