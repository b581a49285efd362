"""The reproduction report's section across tasks, from rows made by hand (no model is run)."""
import json
import sys

import pandas as pd
import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import published
import quality


def row(method: str, allocator: str | None, budget: float | None, accuracy: float) -> dict:
    return {"method": method, "allocator": allocator or "", "target param ratio": budget if budget else "",
            "accuracy": accuracy}


def entry(rows: list[dict], name: str) -> dict:
    return {"rows": rows, "section": [f"## {name}", ""]}


SST2 = [row("dense", None, None, 0.9),
        row("fwsvd-input", "uniform", 0.2, 0.70), row("fwsvd-output", "spectral", 0.2, 0.75),
        row("svd-llm", "uniform", 0.2, 0.72), row("svd-llm", "spectral", 0.2, 0.78),
        row("gfwsvd", "uniform", 0.2, 0.74), row("kfac", "uniform", 0.2, 0.83), row("kfac", "spectral", 0.2, 0.80),
        row("kfac+ft", "uniform", 0.2, 0.89),
        row("fwsvd-input", "uniform", 0.7, 0.85), row("svd-llm", "uniform", 0.7, 0.86),
        row("svd-llm", "spectral", 0.7, 0.87), row("gfwsvd", "uniform", 0.7, 0.84), row("kfac", "spectral", 0.7, 0.855)]


def test_the_section_across_tasks_compares_like_the_paper_and_our_step_against_any_allocator():
    lines = quality.across_tasks({"sst2": entry(SST2, "sst2")})
    table = [line for line in "\n".join(lines).splitlines() if line.startswith("| sst2")]
    # GFWSVD - FWSVD, GFWSVD - SVD-LLM (uniform against uniform), ours (a Kronecker method with an allocator:
    # not the uniform kfac row, not the fine-tuned one) - the best FWSVD or SVD-LLM of any allocator
    cells = [float(c) for line in table for c in line.strip("|").split("|")[2:]]
    assert cells == pytest.approx([0.2, 0.04, 0.02, 0.02, 0.7, -0.01, -0.02, -0.015])
    text = "\n".join(lines)
    assert "ahead of uniform FWSVD in 1 of 2 task-budgets and of uniform SVD-LLM in 1 of 2" in text
    assert "leads the best earlier method in 1 of 2 task-budgets, ties it (within 0.001) in 0 and trails in 1" in text
    assert "+0.0200 at param ratio 0.2 and -0.0150 at 0.7: largest at the smallest budget" in text


def test_the_report_puts_the_section_across_tasks_first_and_skips_tasks_without_gfwsvd():
    older = [row("dense", None, None, 0.9), row("svd", "uniform", 0.2, 0.5)]
    lines = quality.report_lines(["# header", ""], {"cola": entry(older, "cola"), "sst2": entry(SST2, "sst2")})
    text = "\n".join(lines)
    assert text.index("## Across the tasks") < text.index("## sst2") < text.index("## cola")  # the usual order
    assert "| cola" not in text
    assert quality.across_tasks({"cola": entry(older, "cola")}) == []


# ---- family-aware reports (issue 24, 8): perplexity is lower-is-better, a tagger's F1 higher ----

def ppl(method: str, allocator: str | None, budget: float | None, perplexity: float) -> dict:
    return {"method": method, "allocator": allocator or "", "target param ratio": budget if budget else "",
            "perplexity": perplexity}


LM = [ppl("dense", None, None, 20.0),
      ppl("svd", "uniform", 0.8, 900.0), ppl("fwsvd-input", "uniform", 0.8, 60.0), ppl("fwsvd-output", "uniform", 0.8, 50.0),
      ppl("asvd", "uniform", 0.8, 40.0), ppl("svd-llm", "uniform", 0.8, 30.0), ppl("kfac", "uniform", 0.8, 24.0),
      ppl("gfwsvd", "uniform", 0.8, 35.0), ppl("kfac", "spectral", 0.8, 22.0), ppl("svd-llm+ft", "uniform", 0.8, 25.0),
      ppl("svd", "uniform", 0.4, 5000.0), ppl("fwsvd-input", "uniform", 0.4, 300.0), ppl("asvd", "uniform", 0.4, 400.0),
      ppl("svd-llm", "uniform", 0.4, 100.0), ppl("kfac", "uniform", 0.4, 110.0), ppl("gfwsvd", "uniform", 0.4, 90.0)]


def test_perplexity_reads_lower_as_better_in_the_comparisons_and_the_section_across_tasks():
    table = pd.DataFrame(LM).replace("", float("nan"))
    table["allocator"] = table["allocator"].fillna("uniform")
    comparison = quality.kronecker_comparison(table, "perplexity").set_index("param ratio")
    # gains in the metric's direction: GFWSVD 35 against the best FWSVD 50 is 15 better, against SVD-LLM 30 5 worse
    assert comparison.loc[0.8, "GFWSVD - FWSVD"] == pytest.approx(15.0)
    assert comparison.loc[0.8, "GFWSVD - SVD-LLM"] == pytest.approx(-5.0)
    assert comparison.loc[0.8, "best of all"] == "kfac / spectral 22.0000"
    lines = quality.across_tasks({"wikitext2": entry(LM, "wikitext2")})
    row = next(line for line in "\n".join(lines).splitlines() if line.startswith("| wikitext2 (perplexity) | 20 | 0.8"))
    assert [float(c) for c in row.strip("|").split("|")[3:]] == pytest.approx([15.0, -5.0, 8.0])


def test_the_headline_puts_the_lowest_perplexity_first_and_names_both_budget_conventions():
    frame = quality.headline(pd.DataFrame(LM), "perplexity", tuned=False)
    assert list(frame.columns[2:]) == ["20% removed (kept 0.8)", "60% removed (kept 0.4)"]
    smallest = frame["60% removed (kept 0.4)"].replace("", "inf").astype(float)
    assert frame.iloc[0]["method"] == "gfwsvd" and list(smallest) == sorted(smallest)
    assert list(quality.headline(pd.DataFrame(LM), "perplexity", tuned=True)["method"]) == ["svd-llm+ft"]


def test_the_published_directions_are_computed_from_the_rows():
    table = pd.DataFrame(LM)
    order = "\n".join(published.svd_llm_order(table, "perplexity"))
    # at kept 0.8 the rows follow SVD-LLM's order; at 0.4 ASVD (400) is worse than FWSVD (300)
    assert "20% removed (kept 0.8): ours, best first: SVD-LLM 30, ASVD 40, FWSVD 60, SVD 900; the published order holds" in order
    assert "60% removed (kept 0.4)" in order and "FWSVD is not worse than ASVD (300 vs 400)" in order
    kfac = "\n".join(published.kfac_over_svd_llm(table, "perplexity"))
    assert "(kept 0.8), K-FAC uniform: 24 against SVD-LLM 30 (+20.0%)" in kfac
    assert "(kept 0.4), K-FAC uniform: 110 against SVD-LLM 100 (-10.0%)" in kfac
    assert "lower than SVD-LLM at 1 of 2 budgets" in kfac
    tagger = pd.DataFrame([row("dense", None, None, 0.9), row("svd", "uniform", 0.2, 0.1),
                           row("fwsvd-output", "uniform", 0.2, 0.6)]).rename(columns={"accuracy": "f1"})
    table1 = "\n".join(published.fwsvd_table1(tagger, "f1"))
    assert "SVD 0.1 (11% of dense), best FWSVD (fwsvd-output) 0.6 (67%): as published" in table1
    assert published.fwsvd_table1(table, "perplexity") == []  # a share of the dense score means nothing there


@pytest.fixture(scope="module")
def tiny_tagger(tmp_path_factory, minilm_dir):
    import torch
    import transformers as tf
    from conftest import tiny_config

    from fwsvd_core.inputs.tasks import get_task

    conll = get_task("conll2003")
    folder = tmp_path_factory.mktemp("report") / "tagger"
    torch.manual_seed(0)
    config = tiny_config("bert", num_labels=len(conll.label_names))
    config.id2label, config.label2id = dict(enumerate(conll.label_names)), {n: i for i, n in enumerate(conll.label_names)}
    tf.AutoModelForTokenClassification.from_config(config).save_pretrained(folder)
    tf.AutoTokenizer.from_pretrained(minilm_dir).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(("task", "fixture", "extra", "metric"), [
    ("wikitext2", "tiny_lm_dir", ["--data-source", "glue", "--max-length", "24", "--budgets", "0.8,0.4"], "perplexity"),
    ("conll2003", "tiny_tagger", ["--data-source", "synthetic", "--budgets", "0.3,0.5"], "f1"),
])
def test_quick_report_of_each_family(request, glue_dir, tmp_path, task, fixture, extra, metric):
    model = request.getfixturevalue(fixture)
    out = tmp_path / "results_family"
    assert quality.main(["--quick", "--model", str(model), "--tasks", task, "--data-dir", str(glue_dir), *extra,
                         "--finetune-budgets", extra[-1].split(",")[0], "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())[task]
    rows = pd.DataFrame(data["rows"])
    assert metric in rows and {"ci low", "ci high", "removed"} <= set(rows.columns)
    compressed = rows[rows["method"] != "dense"]
    assert (compressed["removed"].astype(float) + compressed["target param ratio"].astype(float)).round(4).eq(1).all()
    headline = pd.DataFrame(data["headline"])
    firsts = headline.iloc[:, -1].str.split(" ").str[0].replace("", "nan").astype(float).dropna()
    assert list(firsts) == sorted(firsts, reverse=metric != "perplexity")  # best first, in the metric's direction
    text = out.with_suffix(".md").read_text()
    assert "% removed (kept " in text and f"{metric} ({'lower' if metric == 'perplexity' else 'higher'} is better)" in text
    assert any(line.startswith("- Published (SVD-LLM") for line in data["findings"])
    assert data["headline after fine-tuning"]  # the fine-tuned rows have their own table
