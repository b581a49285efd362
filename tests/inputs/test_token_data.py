"""Reading token-classification data: CoNLL files (IOB1 and IOB2), JSON, uploads, the hub, and bad input."""
import json

import numpy as np
import pytest

from fwsvd_core.errors import DataError
from fwsvd_core.inputs import token_data
from fwsvd_core.inputs.tasks import GlueFile, TaskSpec
from fwsvd_core.inputs.token_data import (
    CONLL2003_LABELS,
    iob1_to_iob2,
    ordered_label_names,
    read_conll,
    read_tagged_file,
    read_tagged_json,
    tag_array,
)

# the start of CoNLL-2003's original training file: four columns, IOB1 tags (I- opens an entity)
CONLL_IOB1 = """-DOCSTART- -X- O O

EU NNP I-NP I-ORG
rejects VBZ I-VP O
German JJ I-NP I-MISC
call NN I-NP O
to TO I-VP O
boycott VB I-VP O
British JJ I-NP I-MISC
lamb NN I-NP O
. . O O

Peter NNP I-NP I-PER
Blackburn NNP I-NP I-PER

BRUSSELS NNP I-NP I-LOC
1996-08-22 CD I-NP O

The DT I-NP O
European NNP I-NP I-ORG
Commission NNP I-NP I-ORG
and CC O O
Bank NNP I-NP I-ORG
Paribas NNP I-NP B-ORG
"""


def names(sentences, k):
    return [sentences.label_names[i] for i in sentences.tags[k]]


def test_a_conll_file_in_iob1_is_read_as_iob2_with_the_hubs_label_list(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(CONLL_IOB1)
    read = read_conll(path)
    assert read.words[0] == ["EU", "rejects", "German", "call", "to", "boycott", "British", "lamb", "."]
    assert names(read, 0) == ["B-ORG", "O", "B-MISC", "O", "O", "O", "B-MISC", "O", "O"]
    assert names(read, 1) == ["B-PER", "I-PER"]
    # two adjacent organisations: IOB1 marks the second one's start with B-
    assert names(read, 3) == ["O", "B-ORG", "I-ORG", "O", "B-ORG", "B-ORG"]
    assert read.label_names == CONLL2003_LABELS  # all four types found: the hub's order
    assert len(read) == 4 and read.n_skipped == 0 and read.source == "file train.txt"
    assert all(t.dtype == np.int64 and len(t) == len(w) for t, w in zip(read.tags, read.words, strict=True))


def test_iob2_input_is_unchanged_and_iob1_becomes_iob2():
    iob2 = ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "I-LOC", "O", "B-ORG"]
    assert iob1_to_iob2(iob2) == iob2
    assert iob1_to_iob2(["I-PER", "I-PER", "I-LOC", "O", "I-ORG", "B-ORG", "I-ORG"]) == [
        "B-PER", "I-PER", "B-LOC", "O", "B-ORG", "B-ORG", "I-ORG"]


def test_the_label_list_found_puts_o_first_then_pairs_per_type():
    assert ordered_label_names(["B-LOC", "O", "I-PER", "B-EVENT", "B-ANIMAL"]) == (
        "O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ANIMAL", "I-ANIMAL", "B-EVENT", "I-EVENT")


def test_a_given_label_list_fixes_the_indices():
    text = b"Paris B-LOC\nis O\nnice O\n"
    read = read_conll(text, name="a.conll", label_names=CONLL2003_LABELS)
    assert read.label_names == CONLL2003_LABELS and list(read.tags[0]) == [5, 0, 0]


def test_json_lines_and_arrays_with_tag_names_or_indices(tmp_path):
    rows = [{"tokens": ["Anna", "Berg", "visited", "Oslo"], "tags": ["B-PER", "I-PER", "O", "B-LOC"]},
            {"tokens": ["Nokia", "fell"], "ner_tags": ["B-ORG", "O"]}]
    lines = tmp_path / "ner.jsonl"
    lines.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    read = read_tagged_json(lines)
    assert read.words == [r["tokens"] for r in rows]
    assert names(read, 0) == rows[0]["tags"] and names(read, 1) == ["B-ORG", "O"]
    # indices into a given list, as an array of objects
    array = json.dumps([{"tokens": ["Anna", "Berg"], "tags": [1, 2]}]).encode()
    read = read_tagged_json(array, name="ner.json", label_names=CONLL2003_LABELS)
    assert names(read, 0) == ["B-PER", "I-PER"] and read.notes == []
    # indices without names: CoNLL-2003's list, said in a note
    read = read_tagged_json(array, name="ner.json")
    assert names(read, 0) == ["B-PER", "I-PER"] and "CoNLL-2003" in read.notes[0]


def test_an_upload_is_read_by_its_file_name():
    conll = read_tagged_file(b"Oslo B-LOC\n", name="upload.conll")
    as_json = read_tagged_file(b'{"tokens": ["Oslo"], "tags": ["B-LOC"]}', name="upload.jsonl")
    assert conll.words == as_json.words == [["Oslo"]] and names(conll, 0) == names(as_json, 0) == ["B-LOC"]
    with pytest.raises(DataError, match="file name"):
        read_tagged_file(b"Oslo B-LOC\n")


def test_sentences_become_task_data_with_an_object_array_of_tag_arrays():
    spec = TaskSpec("ner", ("tokens",), CONLL2003_LABELS, ("f1",), "f1", "", "", {}, GlueFile("", {}, "tokens", None, "tags"))
    read = read_conll(b"a B-PER\nb I-PER\n\nc O\nd O\n", name="x.conll", label_names=CONLL2003_LABELS)
    data = read.to_task_data(spec, "dev")
    assert data.text_a == [["a", "b"], ["c", "d"]] and data.text_b is None and len(data) == 2
    assert data.labels.shape == (2,) and data.labels.dtype == object  # not a 2-D array, though both have 2 words
    assert [list(t) for t in data.labels] == [[1, 2], [0, 0]]
    assert [list(t) for t in data.subset([1]).labels] == [[0, 0]]
    assert tag_array([[1, 2, 3]])[0].dtype == np.int64


def test_the_hub_gives_tokens_tags_and_the_label_list_of_its_features(monkeypatch):
    import datasets

    features = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                                  "ner_tags": datasets.Sequence(datasets.ClassLabel(names=list(CONLL2003_LABELS)))})
    ds = datasets.Dataset.from_dict({"tokens": [["EU", "rejects"], ["Peter", "Blackburn"]],
                                     "ner_tags": [[3, 0], [1, 2]]}, features=features)
    asked = []
    monkeypatch.setattr(token_data, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", lambda path, split, **kw: asked.append((path, split)) or ds)
    read = token_data.load_hub_tagged("dev")
    assert asked == [("eriktks/conll2003", "validation")]
    assert read.label_names == CONLL2003_LABELS and read.words == [["EU", "rejects"], ["Peter", "Blackburn"]]
    assert names(read, 0) == ["B-ORG", "O"] and names(read, 1) == ["B-PER", "I-PER"]


def test_a_hub_repository_with_a_loading_script_is_read_from_its_parquet_copy(monkeypatch):
    import datasets

    ds = datasets.Dataset.from_dict({"tokens": [["Oslo"]], "ner_tags": [[5]]})  # no names: CoNLL's, with a note
    revisions = []

    def load(path, split, revision=None):
        revisions.append(revision)
        if revision is None:
            raise RuntimeError("Dataset scripts are no longer supported, but found conll2003.py")
        return ds

    monkeypatch.setattr(token_data, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", load)
    read = token_data.load_hub_tagged("train")
    assert revisions == [None, "refs/convert/parquet"] and names(read, 0) == ["B-LOC"] and read.notes


# ---- bad input ---------------------------------------------------------------------------------------------


def test_offline_the_hub_is_refused_with_the_local_options():
    with pytest.raises(DataError, match=r"offline.*CoNLL-format file"):
        token_data.load_hub_tagged("train")


def test_a_line_without_a_tag_is_named_by_its_line():
    text = b"Paris B-LOC\nis O\n\nnice\nweather O\n"
    with pytest.raises(DataError, match=r"line 4: a line with a word and no tag") as error:
        read_conll(text, name="bad.conll")
    assert "1 sentence cannot be read" in str(error.value) and "skip_bad_rows" in str(error.value)


def test_a_tag_outside_the_label_list_is_named_by_its_line():
    text = b"Paris B-LOC\nis O\n\nRex B-ANIMAL\n"
    with pytest.raises(DataError, match=r"line 4: a tag not in the label list .*'B-ANIMAL'"):
        read_conll(text, name="bad.conll", label_names=CONLL2003_LABELS)
    with pytest.raises(DataError, match=r"lines 1, 2: a tag that is neither O nor B-TYPE.*'LOC'"):
        read_conll(b"Paris LOC\nis NN\n", name="pos.conll")


def test_skip_bad_rows_leaves_out_and_counts_whole_sentences():
    text = b"Paris B-LOC\nis O\n\nnice\nweather O\n\nRex B-ANIMAL\n\nOslo B-LOC\n"
    read = read_conll(text, name="bad.conll", label_names=CONLL2003_LABELS, skip_bad_rows=True)
    assert read.words == [["Paris", "is"], ["Oslo"]] and read.n_skipped == 2
    assert "line 4" in read.notes[0] and "line 7" in read.notes[0]


def test_empty_files_and_files_of_only_markers_are_refused():
    for content in (b"", b"\n \n"):
        with pytest.raises(DataError, match="is empty"):
            read_tagged_file(content, name="empty.conll")
    with pytest.raises(DataError, match="no sentence"):
        read_conll(b"-DOCSTART- -X- O O\n\n", name="docstart.conll")
    with pytest.raises(DataError, match="is empty"):
        read_tagged_file(b"  ", name="empty.jsonl")


def test_bad_json_records_are_named_by_their_line():
    lines = [json.dumps({"tokens": ["a", "b"], "tags": ["O"]}), "{not json", json.dumps({"tokens": ["c"]}),
             json.dumps({"tokens": ["Oslo"], "tags": [42]}, ), json.dumps({"tokens": ["Oslo"], "tags": ["B-LOC"]})]
    data = "\n".join(lines).encode()
    with pytest.raises(DataError) as error:
        read_tagged_json(data, name="bad.jsonl", label_names=CONLL2003_LABELS)
    message = str(error.value)
    assert "4 sentences cannot be read" in message
    assert "line 1: 2 tokens but 1 tags" in message and "line 2: not a JSON value" in message
    assert "line 3: no 'tokens' or no 'tags'" in message and "line 4: a tag index out of range 0..8" in message
    read = read_tagged_json(data, name="bad.jsonl", label_names=CONLL2003_LABELS, skip_bad_rows=True)
    assert read.words == [["Oslo"]] and read.n_skipped == 4


def test_a_file_of_nothing_but_bad_sentences_is_refused_even_when_skipping():
    with pytest.raises(DataError, match="not one sentence"):
        read_conll(b"a\n\nb\n", name="x.conll", skip_bad_rows=True)
