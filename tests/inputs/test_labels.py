import pytest
from transformers import BertConfig

from fwsvd_core.errors import LabelMappingError
from fwsvd_core.inputs.labels import map_labels
from fwsvd_core.inputs.tasks import get_task


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


def test_generic_labels_in_order_carry_no_warning():
    assert map_labels(cfg(["LABEL_0", "LABEL_1"]), get_task("sst2")).warning == ""
    assert map_labels(cfg(["negative", "positive"]), get_task("sst2")).warning == ""


def test_generic_labels_out_of_order_are_mapped_by_number_and_reported():
    m = map_labels(cfg(["LABEL_1", "LABEL_0"]), get_task("sst2"))
    assert m.model_to_task == (1, 0) and m.how == "generic names by number"
    assert "output 0 (LABEL_1) -> positive" in m.warning and "output 1 (LABEL_0) -> negative" in m.warning
    assert "Check" in m.warning
    m3 = map_labels(cfg(["LABEL_2", "LABEL_0", "LABEL_1"]), get_task("mnli"))
    assert m3.model_to_task == (2, 0, 1) and m3.warning


def test_generic_labels_that_do_not_number_the_outputs_keep_the_task_order_with_a_warning():
    m = map_labels(cfg(["LABEL_0", "LABEL_0"]), get_task("sst2"))
    assert m.model_to_task == (0, 1) and "output 0 is LABEL_0, output 1 is LABEL_0" in m.warning
    assert "assumed to follow the task's order" in m.warning


def test_label2id_that_disagrees_with_id2label_is_reported():
    config = BertConfig(num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 1, "positive": 0})
    m = map_labels(config, get_task("sst2"))
    assert m.model_to_task == (0, 1) and "label2id disagrees" in m.warning and "'negative': 1" in m.warning
    # transformers' default label2id, left behind when only id2label was set, says nothing
    edited = BertConfig(num_labels=2)
    edited.id2label = {0: "negative", 1: "positive"}
    assert map_labels(edited, get_task("sst2")).warning == ""
    swapped = BertConfig(num_labels=2)
    swapped.id2label = {0: "LABEL_1", 1: "LABEL_0"}
    assert "label2id disagrees" in map_labels(swapped, get_task("sst2")).warning


def test_id2label_with_text_keys_is_a_clear_message_and_numeric_strings_are_accepted():
    # issue 21: "invalid literal for int() with base 10: 'negative'"
    from types import SimpleNamespace

    from fwsvd_core.inputs.labels import id2label_problem

    sst2 = get_task("sst2")
    numeric = SimpleNamespace(num_labels=2, id2label={"1": "positive", " 0": "negative"}, label2id={})
    assert map_labels(numeric, sst2).model_to_task == (0, 1)
    swapped = SimpleNamespace(num_labels=2, id2label={"negative": 0, "positive": 1}, label2id={})
    with pytest.raises(LabelMappingError) as error:
        map_labels(swapped, sst2)
    message = str(error.value)
    assert "id2label keys that are not output numbers ('negative', 'positive')" in message
    assert "looks like label2id written under id2label" in message and '{"0": "negative", "1": "positive"}' in message
    assert "invalid literal" not in message
    assert "not output numbers ('first')" in id2label_problem({"first": "negative", "1": "positive"})
    assert id2label_problem({0: "negative", "1": "positive"}) is None
