"""The task-family registry: every task has a family, models are recognised by class, a new family is one record."""
import pytest

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.families import (
    family_names,
    family_of,
    family_of_architectures,
    family_of_class,
    family_of_model,
    get_family,
    register,
)
from fwsvd_core.inputs.families import registry as family_registry
from fwsvd_core.inputs.families.sequence import SEQUENCE
from fwsvd_core.inputs.tasks import TASKS
from fwsvd_core.loading import load_model


def test_every_glue_task_is_a_sequence_task_and_conll_a_token_task():
    glue = [task for task in TASKS.values() if task.glue_file is not None]
    assert len(glue) >= 9 and {family_of(task).name for task in glue} == {"sequence-classification"}
    assert family_of(TASKS["conll2003"]).name == "token-classification"
    assert family_names()[:2] == ["sequence-classification", "token-classification"]


def test_models_are_recognised_by_class_name_and_by_config(tiny_models):
    assert family_of_class("RobertaForSequenceClassification") is SEQUENCE
    assert family_of_class("SomethingElse") is None
    loaded = load_model(tiny_models["bert"], device="cpu")
    assert family_of_model(loaded.model) is SEQUENCE and family_of_model(type(loaded.model)) is SEQUENCE
    assert family_of_architectures(loaded.model.config) is SEQUENCE


def test_a_new_family_is_one_record_and_an_unknown_one_is_a_clear_error(monkeypatch):
    from dataclasses import replace

    monkeypatch.setattr(family_registry, "_FAMILIES", dict(family_registry._FAMILIES))
    toy = register(replace(SEQUENCE, name="toy-family", class_suffixes=("ForToyTask",), order=99))
    assert "toy-family" in family_names() and get_family("toy-family") is toy
    assert family_of_class("BertForToyTask") is toy
    with pytest.raises(DataError, match="Unknown task family 'nope'"):
        get_family("nope")
