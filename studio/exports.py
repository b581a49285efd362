"""What an export from the dashboard records about itself: the same facts the command line's export records (the
Fisher settings, the scores measured at its ranks, the command that makes it again)."""
from __future__ import annotations

import shlex

from fwsvd_core.compression.card_metadata import calibration_record
from fwsvd_core.estimation.evaluation import EvalResult
from fwsvd_core.estimation.fisher import FisherResult
from fwsvd_core.inputs.data import TaskData

REPRODUCE_OUTPUT = "results/compressed"  # a folder under results/, which the repository ignores


def reproduce_command(choice, method: str, merge: bool) -> str:
    """The command line that compresses this model again with the ranks of an export (read back from the export's
    own folder, THIS_FOLDER) and scores it as the dashboard did; a comment says what the command line cannot
    repeat (an uploaded file, the generated task)."""
    args = ["--model", choice.model, "--task", choice.task]
    note = ""
    if choice.data_source == "Local GLUE folder":
        args += ["--data-source", "glue", "--data-dir", choice.data_dir]
    elif choice.data_source == "Hugging Face hub":
        args += ["--data-source", "hub"]
    elif choice.data_source == "Uploaded file":
        note = (f"# the Fisher and the scores came from a file uploaded to the dashboard ({choice.upload_name}, cut "
                "80/20 into train and dev); the command line reads GLUE folders and the hub: give it one of those\n")
    else:
        args += ["--data-source", "synthetic"]
        note = "# the Fisher and the scores came from the generated (synthetic) task: no real data\n"
    if choice.dtype != "auto":
        args += ["--dtype", choice.dtype]
    args += ["--fisher-samples", str(choice.fisher_samples), "--estimator", choice.estimator]
    if choice.family.example_unit == "window":  # a language model's text, cut into windows of this many tokens
        args += ["--seq-len", str(choice.seq_len)]
    if choice.allow_degenerate_fisher:
        args.append("--allow-degenerate-fisher")
    args += ["--method", method, "--ranks", "THIS_FOLDER", "--evaluate"]
    if choice.eval_subsample:
        args += ["--eval-subsample", str(choice.eval_subsample)]
    if merge:
        args.append("--merge")
    args += ["--output-dir", REPRODUCE_OUTPUT]
    return note + "python -m fwsvd_core compress " + shlex.join(args)


def export_extra(choice, source: str, fisher: FisherResult, method: str, merge: bool, dense: EvalResult,
                 compressed: EvalResult, eval_source: str, fisher_data: TaskData) -> dict:
    """The `extra` of `save_compressed` for an export made in the dashboard: what the command line's export carries
    (source, task, the Fisher's settings and calibration data, dense and compressed scores on the same examples, the
    command)."""
    return {
        "source": source, "task": choice.task,
        "command": reproduce_command(choice, method, merge),
        "fisher": {"estimator": fisher.estimator, "examples": fisher.n_examples, "skipped": fisher.n_skipped},
        "calibration": calibration_record(fisher_data, fisher.n_examples),
        "scores": {"dense": dict(dense.metrics), method: dict(compressed.metrics)},
        "eval data": f"{eval_source}, {compressed.n_examples} examples",
    }
