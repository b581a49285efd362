"""The README.md every export carries: where the model came from, how it was compressed, what it scored."""
from __future__ import annotations

from collections import Counter

from fwsvd_core.compression.rank_table import FORM_LOWRANK, FORM_ORIGINAL, RankTable

RANKS_FILE = "fwsvd_ranks.json"  # beside a compressed export's weights
MERGED_RANKS_FILE = "fwsvd_merged_ranks.json"  # beside a merged one's: not a compressed export to the loader

MAX_LAYER_ROWS = 48  # more layers than this are summarised by form and rank range


def layer_params(row) -> tuple[int, int]:
    """Weights of one layer before and after (bias left out: it is kept as it is)."""
    before = row.in_features * row.out_features
    return before, row.rank * (row.in_features + row.out_features) if row.form == FORM_LOWRANK else before


def model_card(table: RankTable, model_params: int, dtype: str, merged: bool = False,
               auto_class: str = "AutoModelForSequenceClassification") -> str:
    """Markdown for the export's README.md; `model_params` counts the saved model's parameters, `auto_class` is the
    transformers class a model of its task loads with."""
    before = sum(layer_params(r)[0] for r in table.layers.values())
    after = sum(layer_params(r)[1] for r in table.layers.values())
    if merged:  # every layer is stored dense again: nothing is saved
        saved_params, original = model_params, model_params
    else:
        saved_params, original = model_params, model_params - after + before
    extra = table.extra
    fisher = extra.get("fisher") or {}
    lines = [
        f"# {'Merged' if merged else 'Compressed'} {extra.get('task', '')} model (FWSVD Studio)".replace("  ", " "),
        "",
        f"- Base model: {extra.get('source', 'not recorded')}",
        f"- Method: {table.method or 'not recorded'}",
        f"- Fisher: {fisher.get('estimator', 'none')} estimator, {fisher.get('examples', 0)} training examples"
        + (f" ({fisher['skipped']} skipped: no finite gradient)" if fisher.get("skipped") else "")
        if fisher else "- Fisher: not used by this method",
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
