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


def test_every_glue_task_is_a_sequence_task():
    assert {family_of(task).name for task in TASKS.values()} == {"sequence-classification"}
    assert "sequence-classification" in family_names()


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
