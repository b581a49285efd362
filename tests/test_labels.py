import pytest
from transformers import BertConfig

from fwsvd_core.errors import LabelMappingError
from fwsvd_core.labels import map_labels
from fwsvd_core.tasks import get_task


def cfg(names):
    return BertConfig(num_labels=len(names), id2label=dict(enumerate(names)))


def test_generic_labels_follow_the_task_order():
    m = map_labels(cfg(["LABEL_0", "LABEL_1"]), get_task("sst2"))
    assert m.model_to_task == (0, 1) and "generic" in m.message


def test_mnli_checkpoints_with_another_order_are_reordered():
    m = map_labels(cfg(["CONTRADICTION", "NEUTRAL", "ENTAILMENT"]), get_task("mnli"))
    assert m.model_to_task == (2, 1, 0) and "reordered" in m.message


def test_synonyms_match():
    assert map_labels(cfg(["NEG", "POS"]), get_task("sst2")).model_to_task == (0, 1)
    assert map_labels(cfg(["not entailment", "entailment"]), get_task("rte")).model_to_task == (1, 0)


def test_unmatched_names_and_wrong_sizes_are_said():
    with pytest.raises(LabelMappingError, match="Cannot match"):
        map_labels(cfg(["joy", "anger"]), get_task("sst2"))
    with pytest.raises(LabelMappingError, match="3 output labels"):
        map_labels(cfg(["a", "b", "c"]), get_task("sst2"))
    with pytest.raises(LabelMappingError, match="regression"):
        map_labels(cfg(["a", "b"]), get_task("stsb"))
