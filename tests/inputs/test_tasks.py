import pytest

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.tasks import TASKS, custom_task, get_task


def test_all_glue_tasks_are_registered_with_their_metrics():
    glue = {name for name, task in TASKS.items() if task.glue_file is not None}
    assert glue == {"cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli-mm", "qnli", "rte", "wnli"}
    assert get_task("CoNLL").name == "conll2003" and get_task("ner").primary_metric == "f1"  # the token family's
    assert get_task("CoLA").primary_metric == "mcc"
    assert get_task("mrpc").metrics == ("f1", "accuracy")
    assert get_task("STS-B").is_regression and get_task("stsb").metrics == ("pearson", "spearman")
    assert get_task("mnli").num_labels == 3 and get_task("mnli-mm").hub_splits["dev"] == "validation_mismatched"
    assert get_task("qnli").is_pair and not get_task("sst2").is_pair


def test_unknown_task_names_the_known_ones():
    with pytest.raises(DataError, match=r"Known tasks: cola.*conll2003"):
        get_task("imdb")


def test_custom_tasks():
    assert custom_task("mine", ("text",), ("a", "b", "c")).metrics == ("accuracy",)
    assert custom_task("mine", ("a", "b"), ()).is_regression
    with pytest.raises(DataError):
        custom_task("mine", ("a", "b", "c"), ("x",))
