"""The README.md every export carries: where the model came from, how it was compressed, what it scored."""
from __future__ import annotations

from collections import Counter

from fwsvd_core.compression.card_metadata import primary_metric
from fwsvd_core.compression.rank_table import FORM_LOWRANK, FORM_ORIGINAL, RankTable
from fwsvd_core.inputs.families import Family, higher_is_better

RANKS_FILE = "fwsvd_ranks.json"  # beside a compressed export's weights
MERGED_RANKS_FILE = "fwsvd_merged_ranks.json"  # beside a merged one's: not a compressed export to the loader

MAX_LAYER_ROWS = 48  # more layers than this are summarised by form and rank range


def layer_params(row) -> tuple[int, int]:
    """Weights of one layer before and after (bias left out: it is kept as it is)."""
    before = row.in_features * row.out_features
    return before, row.rank * (row.in_features + row.out_features) if row.form == FORM_LOWRANK else before


def model_card(table: RankTable, model_params: int, dtype: str, merged: bool = False,
               auto_class: str = "AutoModelForSequenceClassification", family: Family | None = None) -> str:
    """Markdown for the export's README.md; `model_params` counts the saved model's parameters, `auto_class` is the
    transformers class a model of its task loads with (the family's, when `family` is given)."""
    if family is not None:
        auto_class = family.auto_class
    before = sum(layer_params(r)[0] for r in table.layers.values())
    after = sum(layer_params(r)[1] for r in table.layers.values())
    if merged:  # every layer is stored dense again: nothing is saved
        saved_params, original = model_params, model_params
    else:
        saved_params, original = model_params, model_params - after + before
    extra = table.extra
    fisher = extra.get("fisher") or {}
    calibration = extra.get("calibration") or {}
    lines = [
        f"# {'Merged' if merged else 'Compressed'} {extra.get('task', '')} model (FWSVD Studio)".replace("  ", " "),
        "",
        f"- Base model: {extra.get('source', 'not recorded')}",
        *([f"- Task family: {family.name} ({family.description}); hub pipeline `{family.pipeline_tag}`"]
          if family is not None else []),
        f"- Method: {table.method or 'not recorded'}",
        f"- Fisher: {fisher.get('estimator', 'none')} estimator, "
        + (f"{calibration['size']}" if calibration.get("size") else f"{fisher.get('examples', 0)} training examples")
        + (f" ({fisher['skipped']} skipped: no finite gradient)" if fisher.get("skipped") else "")
        if fisher else "- Fisher: not used by this method",
        *([f"- Calibration data: {calibration['size']}, drawn from {calibration.get('data', 'data not recorded')}"]
          if calibration.get("size") else []),
        *_score_lines(table),
        f"- Weights' dtype: {dtype}",
        f"- Compressible layers: {len(table.layers)}; their weights kept: {after:,} of {before:,} "
        f"(parameter ratio {after / max(before, 1):.3f})",
    ]
    if merged:
        lines += [f"- Stored dense in the original architecture: {saved_params:,} parameters, as many as the "
                  "original. Merging saves no parameters; it gives the compressed model's outputs to tools that "
                  "only read standard checkpoints."]
    else:
        lines += [f"- Parameters of the whole model: {saved_params:,} of {original:,} "
                  f"(ratio {saved_params / max(original, 1):.3f})"]
    if scores := extra.get("scores"):
        lines += ["", "## Scores measured", "", "| model | " + " | ".join(next(iter(scores.values()))) + " |",
                  "|---|" + "---|" * len(next(iter(scores.values())))]
        lines += [f"| {name} | " + " | ".join(f"{v:.4f}" for v in values.values()) + " |" for name, values in scores.items()]
        if data := extra.get("eval data"):
            lines += ["", f"Scored on {data}."]
    if history := extra.get("history"):
        lines += _history_lines(history, table)
    lines += ["", "## Loading", ""]
    if merged:
        lines += ["```python", f"from transformers import {auto_class}, AutoTokenizer",
                  f'model = {auto_class}.from_pretrained("THIS_FOLDER")',
                  'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER")', "```"]
    else:
        lines += ["```python", f"from transformers import {auto_class}, AutoTokenizer",
                  "# the factorized layers are defined in fwsvd_modeling.py, beside the weights",
                  f'model = {auto_class}.from_pretrained("THIS_FOLDER", trust_remote_code=True)',
                  'tokenizer = AutoTokenizer.from_pretrained("THIS_FOLDER", trust_remote_code=True)', "```", "",
                  'or `fwsvd_core.load_model("THIS_FOLDER")` with FWSVD Studio installed.']
    if command := extra.get("command"):
        lines += ["", "## Reproducing it", "", "```", command, "```"]
    lines += ["", "## Ranks per layer", ""]
    lines += _rank_lines(table, MERGED_RANKS_FILE if merged else RANKS_FILE)
    return "\n".join(lines) + "\n"


def _score_lines(table: RankTable) -> list[str]:
    """The compressed model's score in its task's metric, beside the dense one, with the metric's direction."""
    scores = table.extra.get("scores") or {}
    measured = scores.get(table.method) or next((v for k, v in scores.items() if k != "dense"), None)
    metric = primary_metric(str(table.extra.get("task") or ""), measured or {})
    if not measured or metric is None:
        return ["- Score: not measured"]
    dense = (scores.get("dense") or {}).get(metric)
    direction = "higher is better" if higher_is_better(metric) else "lower is better"
    where = f", measured on {table.extra['eval data']}" if table.extra.get("eval data") else ""
    return [f"- Score: {metric} {_number(measured[metric])} ("
            + (f"dense {_number(dense)}; " if dense is not None else "") + f"{direction}){where}"]


def _number(value: float) -> str:
    """A score for a person: four significant digits, a large perplexity in whole numbers rather than powers of ten."""
    return f"{value:,.0f}" if abs(value) >= 1e4 else f"{value:.4g}"


def _history_lines(history: list[dict], table: RankTable) -> list[str]:
    """What each step of a model compressed more than once factorized, oldest first."""
    done = {name for step in history for name in step.get("layers", [])}
    now = [name for name, row in table.layers.items() if row.form != FORM_ORIGINAL and name not in done]
    steps = [*history, {"method": table.method, "source": table.extra.get("source"), "layers": now}]
    lines = ["", f"## Compressed in {len(steps)} steps", ""]
    for number, step in enumerate(steps, 1):
        names = step.get("layers", [])
        shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
        origin = f" of {step['source']}" if step.get("source") else ""
        lines.append(f"{number}. {step.get('method') or 'method not recorded'}{origin}: {len(names)} layers"
                     + (f" ({shown})" if names else ""))
    return lines


def _rank_lines(table: RankTable, table_file: str) -> list[str]:
    rows = list(table.layers.items())
    if len(rows) <= MAX_LAYER_ROWS:
        return ["| layer | out x in | rank | stored as |", "|---|---|---|---|"] + [
            f"| {name} | {r.out_features} x {r.in_features} | {r.rank} | {r.form} |" for name, r in rows]
    forms = Counter(r.form for _, r in rows)
    ranks = [r.rank for _, r in rows]
    return [f"{len(rows)} layers: " + ", ".join(f"{n} {form}" for form, n in sorted(forms.items()))
            + f"; ranks from {min(ranks)} to {max(ranks)}. The full table is in {table_file}."]
