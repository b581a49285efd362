"""The reproduction report's section across tasks, from rows made by hand (no model is run)."""
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
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
