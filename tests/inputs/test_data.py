import json
import re

import numpy as np
import pytest

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.data import (
    load_file,
    load_glue_folder,
    load_hub,
    read_table,
)
from fwsvd_core.inputs.families import load_task_data
from fwsvd_core.inputs.tasks import get_task


@pytest.mark.parametrize(
    "task, n_dev, first_label",
    [("sst2", 872, 1), ("cola", 1043, 1), ("mrpc", 408, 1), ("stsb", 1500, 5.0), ("rte", 277, 1)],
)
def test_glue_folder_splits_load_with_labels(glue_dir, task, n_dev, first_label):
    data = load_glue_folder(get_task(task), glue_dir, "dev")
    assert len(data) == n_dev and data.labels[0] == pytest.approx(first_label)
    assert (data.text_b is not None) == get_task(task).is_pair
    assert all(isinstance(t, str) and t for t in data.text_a[:50])


def test_mrpc_header_with_byte_order_mark_and_quotes(glue_dir):
    data = load_glue_folder(get_task("mrpc"), glue_dir, "dev")
    assert data.text_b[0].startswith('" The foodservice')


def test_rte_word_labels_become_indices(glue_dir):
    data = load_glue_folder(get_task("rte"), glue_dir, "dev")
    assert set(np.unique(data.labels)) == {0, 1}
    assert data.labels[0] == 1  # not_entailment


def test_sample_is_seeded_and_a_subset(glue_dir):
    data = load_glue_folder(get_task("sst2"), glue_dir, "dev")
    a, b = data.sample(50, seed=3), data.sample(50, seed=3)
    assert a.text_a == b.text_a and len(a) == 50
    assert set(a.text_a) <= set(data.text_a)
    assert data.sample(None) is data


def test_user_csv_tsv_and_json(tmp_path):
    task = get_task("sst2")
    (tmp_path / "d.csv").write_text('review,stars\n"good, really",positive\nbad,0\n')
    data = load_file(task, tmp_path / "d.csv", ["review"], "stars")
    assert data.text_a == ["good, really", "bad"] and list(data.labels) == [1, 0]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps({"t": f"x{i}", "y": i % 2}) for i in range(4)))
    assert list(load_file(task, tmp_path / "d.jsonl", ["t"], "y").labels) == [0, 1, 0, 1]


def test_missing_columns_are_named(tmp_path):
    (tmp_path / "d.tsv").write_text("text\tscore\nhello\t1\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['sentence'\].*The file has: text, score"):
        load_file(get_task("sst2"), tmp_path / "d.tsv", ["sentence"], "score")


def test_bad_labels_are_refused(tmp_path):
    (tmp_path / "d.csv").write_text("t,y\na,7\n")
    with pytest.raises(DataError, match="out of range"):
        load_file(get_task("sst2"), tmp_path / "d.csv", ["t"], "y")
    (tmp_path / "e.csv").write_text("t,y\na,maybe\n")
    with pytest.raises(DataError, match="neither a class index"):
        load_file(get_task("sst2"), tmp_path / "e.csv", ["t"], "y")


def test_hub_offline_fails_fast_with_local_options(monkeypatch):
    import time

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(DataError, match="GLUE-format folder"):
        load_hub(get_task("sst2"), "dev")
    assert time.perf_counter() - start < 5


def test_auto_source_prefers_the_local_folder(glue_dir, monkeypatch):
    monkeypatch.setenv("FWSVD_DATA_DIR", str(glue_dir))
    assert load_task_data(get_task("sst2"), "dev").source.startswith("GLUE folder")
    monkeypatch.delenv("FWSVD_DATA_DIR")
    with pytest.raises(DataError, match="No local GLUE folder"):
        load_task_data(get_task("sst2"), "dev", source="glue")


# Row counts of the real GLUE files as pandas read them before malformed rows became an error: the strict
# reader must give the same examples, with nothing to skip.
GLUE_ROWS = {
    ("sst2", "train"): 67349, ("sst2", "dev"): 872, ("cola", "train"): 8551, ("cola", "dev"): 1043,
    ("mrpc", "train"): 3667, ("mrpc", "dev"): 408, ("stsb", "train"): 5749, ("stsb", "dev"): 1500,
    ("rte", "train"): 2490, ("rte", "dev"): 277,
}


@pytest.mark.parametrize("task, split", sorted(GLUE_ROWS))
def test_real_glue_files_load_whole_and_strictly(glue_dir, task, split):
    data = load_glue_folder(get_task(task), glue_dir, split)
    assert len(data) == GLUE_ROWS[task, split]
    assert data.n_skipped_rows == 0 and data.notes == []
    assert len(data.labels) == len(data) and all(t.strip() for t in data.text_a)
    assert data.text_b is None or len(data.text_b) == len(data)


SST_TSV = "sentence\tlabel\ngood movie\t1\nbad\tmovie\t0\nfine\t1\nawful\tfilm\t0\ngreat\t1\n"


def test_tsv_rows_with_extra_fields_are_an_error_naming_their_lines(tmp_path):
    (tmp_path / "d.tsv").write_text(SST_TSV)
    with pytest.raises(DataError, match=r"(?s)2 rows.*lines 3, 5: 3 fields where the header has 2.*skip_bad_rows"):
        load_file(get_task("sst2"), tmp_path / "d.tsv", ["sentence"], "label")


def test_skip_bad_rows_leaves_them_out_and_counts_them(tmp_path):
    (tmp_path / "d.tsv").write_text(SST_TSV)
    data = load_file(get_task("sst2"), tmp_path / "d.tsv", ["sentence"], "label", skip_bad_rows=True)
    assert data.text_a == ["good movie", "fine", "great"] and list(data.labels) == [1, 1, 1]
    assert data.n_skipped_rows == 2
    assert len(data.notes) == 1 and "Skipped 2 rows" in data.notes[0] and "lines 3, 5" in data.notes[0]
    assert data.subset([0, 1]).n_skipped_rows == 2 and data.sample(2, seed=0).notes == data.notes


def test_rows_with_missing_fields_are_bad_rows_too(tmp_path):
    (tmp_path / "d.csv").write_text("t,y\na,1\nb\nc,0,extra\nd,0\n")
    with pytest.raises(DataError, match=r"(?s)line 3: 1 field where the header has 2.*line 4: 3 fields"):
        load_file(get_task("sst2"), tmp_path / "d.csv", ["t"], "y")


def test_many_bad_lines_are_shown_up_to_ten(tmp_path):
    rows = "".join(f"s{i}\tx\t1\n" for i in range(15))  # every data row has one field too many
    (tmp_path / "d.tsv").write_text("sentence\tlabel\nok\t1\n" + rows)
    with pytest.raises(DataError, match=r"lines 3, 4, 5, 6, 7, 8, 9, 10, 11, 12 and 5 more:") as info:
        load_file(get_task("sst2"), tmp_path / "d.tsv", ["sentence"], "label")
    assert "13" not in str(info.value)


def test_headerless_glue_tsv_checks_field_counts_against_the_first_line(tmp_path):
    folder = tmp_path / "CoLA"
    folder.mkdir()
    (folder / "dev.tsv").write_text('gj04\t1\t\tA "quoted" sentence.\ngj04\t0\t*\tBad\tone.\ngj04\t1\t\tFine.\n')
    with pytest.raises(DataError, match=r"line 2: 5 fields where the first line has 4"):
        load_glue_folder(get_task("cola"), tmp_path, "dev")
    data = load_glue_folder(get_task("cola"), tmp_path, "dev", skip_bad_rows=True)
    assert data.text_a == ['A "quoted" sentence.', "Fine."] and data.n_skipped_rows == 1


def test_skip_bad_rows_reaches_load_task_data(tmp_path):
    folder = tmp_path / "SST-2"
    folder.mkdir()
    (folder / "dev.tsv").write_text(SST_TSV)
    with pytest.raises(DataError, match="lines 3, 5"):
        load_task_data(get_task("sst2"), "dev", source="glue", data_dir=tmp_path)
    assert load_task_data(get_task("sst2"), "dev", "glue", tmp_path, skip_bad_rows=True).n_skipped_rows == 2


def test_a_quoted_csv_row_over_several_lines_is_named_by_its_first_line(tmp_path):
    (tmp_path / "d.csv").write_text('t,y\n"two\nlines",1\n,0\nok,1\n')
    with pytest.raises(DataError, match=r"line 4: column 't' holds a missing or empty text"):
        load_file(get_task("sst2"), tmp_path / "d.csv", ["t"], "y")


def test_null_texts_and_labels_are_refused_with_their_lines(tmp_path):
    rows = [{"t": "a", "y": 1}, {"t": None, "y": 0}, {"t": "c", "y": None}, {"y": 1}, {"t": "e", "y": 0}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    expected = r"(?s)3 rows.*lines 2, 4: column 't' holds a missing.*line 3: the label is missing"
    with pytest.raises(DataError, match=expected):
        load_file(get_task("sst2"), tmp_path / "d.jsonl", ["t"], "y")
    data = load_file(get_task("sst2"), tmp_path / "d.jsonl", ["t"], "y", skip_bad_rows=True)
    assert data.text_a == ["a", "e"] and data.n_skipped_rows == 3


def test_nan_in_a_json_array_is_refused_with_its_item_number(tmp_path):
    (tmp_path / "d.json").write_text('[{"t": "a", "y": 1}, {"t": NaN, "y": 0}]')
    with pytest.raises(DataError, match=r"array item 2: column 't' holds a missing or empty text"):
        load_file(get_task("sst2"), tmp_path / "d.json", ["t"], "y")


def test_list_and_dict_texts_are_refused_not_stringified(tmp_path):
    rows = [{"t": "a", "y": 1}, {"t": ["x", "y"], "y": 0}, {"t": {"k": 1}, "y": 1}, {"t": 7, "y": 0}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    expected = r"(?s)line 2: column 't' holds a list, not a text.*line 3: column 't' holds an object"
    with pytest.raises(DataError, match=expected):
        load_file(get_task("sst2"), tmp_path / "d.jsonl", ["t"], "y")
    data = load_file(get_task("sst2"), tmp_path / "d.jsonl", ["t"], "y", skip_bad_rows=True)
    assert data.text_a == ["a", "7"] and data.n_skipped_rows == 2  # a number is a text written as a number


def test_json_array_pretty_array_and_json_lines_give_the_same_data(tmp_path):
    rows = [{"t": f"text {i}", "u": f"other {i}", "y": i % 2} for i in range(5)]
    (tmp_path / "one_line.json").write_text(json.dumps(rows))
    (tmp_path / "pretty.json").write_text(json.dumps(rows, indent=2))
    (tmp_path / "lines.json").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    (tmp_path / "lines.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    task = get_task("mrpc")
    names = ("one_line.json", "pretty.json", "lines.json", "lines.jsonl")
    loaded = [load_file(task, tmp_path / n, ["t", "u"], "y") for n in names]
    assert loaded[0].text_a == [f"text {i}" for i in range(5)] and list(loaded[0].labels) == [0, 1, 0, 1, 0]
    assert len({d.content_digest() for d in loaded}) == 1
    assert all(d.text_b == loaded[0].text_b for d in loaded)


@pytest.mark.parametrize("content, found", [
    ('{\n  "t": ["a", "b"],\n  "y": [0, 1]\n}\n', "a single JSON object spread over several lines"),
    ('"just a string"', "a single JSON string."),
    ('"a"\n"b"\n', "its lines hold JSON strings, not objects"),
    ("[1, 2, 3]", "its items are JSON numbers"),
    ('[{"t": "a", "y": 1},', "not valid JSON"),
    ("t,y\na,1\n", "not valid JSON"),
])
def test_other_json_is_refused_saying_what_is_expected(tmp_path, content, found):
    (tmp_path / "d.json").write_text(content)
    with pytest.raises(DataError, match=r"array of objects.*one object per line") as info:
        load_file(get_task("sst2"), tmp_path / "d.json", ["t"], "y")
    assert found in str(info.value)


def test_a_json_lines_line_that_is_not_an_object_is_a_bad_row(tmp_path):
    (tmp_path / "d.jsonl").write_text('{"t": "a", "y": 1}\n[1, 2]\n\n{"t": "b", "y": 0\n{"t": "c", "y": 0}\n')
    with pytest.raises(DataError, match=r"(?s)line 2: a JSON array, not an object.*line 4: not a JSON value"):
        load_file(get_task("sst2"), tmp_path / "d.jsonl", ["t"], "y")
    data = load_file(get_task("sst2"), tmp_path / "d.jsonl", ["t"], "y", skip_bad_rows=True)
    assert data.text_a == ["a", "c"] and data.n_skipped_rows == 2


def test_bytes_with_a_name_read_like_the_file(tmp_path):
    content = 'review,stars\n"good, really",positive\nbad,0\n'
    (tmp_path / "d.csv").write_text(content)
    from_disk = load_file(get_task("sst2"), tmp_path / "d.csv", ["review"], "stars")
    in_memory = load_file(get_task("sst2"), content.encode(), ["review"], "stars", name="upload.csv")
    assert in_memory.content_digest() == from_disk.content_digest() and in_memory.source == "file upload.csv"
    assert list(read_table(content.encode(), name="upload.csv").columns) == ["review", "stars"]
    tsv = read_table(SST_TSV.encode(), "u.tsv", skip_bad_rows=True)
    assert tsv["sentence"].tolist() == ["good movie", "fine", "great"]
    with pytest.raises(DataError, match="lines 3, 5"):
        read_table(SST_TSV.encode(), "u.tsv")
    with pytest.raises(DataError, match="file name"):
        read_table(content.encode())
    with pytest.raises(DataError, match=re.escape("unsupported file type '.xlsx'")):
        read_table(b"PK", "book.xlsx")


def test_not_utf8_and_empty_files_are_said(tmp_path):
    with pytest.raises(DataError, match="not UTF-8 text: byte 0xe9 on line 2"):
        read_table("t,y\ncaf\u00e9,1\n".encode("latin-1"), "d.csv")
    (tmp_path / "e.tsv").write_text("")
    with pytest.raises(DataError, match="is empty"):
        load_file(get_task("sst2"), tmp_path / "e.tsv", ["t"], "y")
    (tmp_path / "h.tsv").write_text("t\ty\n")
    with pytest.raises(DataError, match="no data rows"):
        load_file(get_task("sst2"), tmp_path / "h.tsv", ["t"], "y")


def test_when_every_row_is_bad_skipping_still_fails(tmp_path):
    (tmp_path / "d.csv").write_text("t,y\na,maybe\nb,7\n")
    expected = r"(?s)not one row.*\(2 rows left out\).*line 2: the label is neither.*line 3: the label is out of range"
    with pytest.raises(DataError, match=expected):
        load_file(get_task("sst2"), tmp_path / "d.csv", ["t"], "y", skip_bad_rows=True)


def test_regression_labels_must_be_finite_numbers(tmp_path):
    (tmp_path / "d.csv").write_text("a,b,s\nx,y,4.5\nx,y,nan\nx,y,high\n")
    expected = r"(?s)line 3: the label is not a finite number.*line 4: the label is not a number"
    with pytest.raises(DataError, match=expected):
        load_file(get_task("stsb"), tmp_path / "d.csv", ["a", "b"], "s")


def _reviews_with_an_unclosed_quote() -> bytes:
    rows = ["sentence,label"] + [f"review number {i} is fine,{i % 2}" for i in range(39)]
    rows[5] = '"Best film ever,1'  # the quote opens a field that only the quote of line 31 closes
    rows[30] = 'it said "wow" twice,0'
    return ("\n".join(rows) + "\n").encode()


def test_a_text_starting_with_a_quote_that_swallows_rows_is_reported_with_its_lines():
    # issue 21, item 5: 40 lines became 15 examples, one 26 lines long, and 0 were reported skipped
    sst2 = get_task("sst2")
    with pytest.raises(DataError) as error:
        load_file(sst2, _reviews_with_an_unclosed_quote(), ["sentence"], "label", name="r.csv")
    message = str(error.value)
    assert "26 rows cannot be read" in message and "lines 6, 7, 8," in message and "and 16 more" in message
    assert "an unclosed quote that takes in the lines after it" in message and "starting with a quote" in message
    data = load_file(sst2, _reviews_with_an_unclosed_quote(), ["sentence"], "label", name="r.csv", skip_bad_rows=True)
    assert len(data) == 13 and data.n_skipped_rows == 26 and len(data) + data.n_skipped_rows == 39
    assert all("\n" not in text for text in data.text_a)
    assert "Skipped 26 rows" in data.notes[0]


def test_a_lone_carriage_return_is_named_as_such_not_as_a_tab():
    # issue 21: a lone \r split the line in two and the message blamed "a tab inside a text"
    sst2 = get_task("sst2")
    for name, text in (("r.tsv", b"sentence\tlabel\ngood one\t1\nbad\rpiece\t0\nok\t1\n"),
                       ("r.csv", b"sentence,label\ngood one,1\nbad\rpiece,0\nok,1\n")):
        with pytest.raises(DataError) as error:
            load_file(sst2, text, ["sentence"], "label", name=name)
        message = str(error.value)
        assert "line 3: a carriage return (\\r) alone inside a text" in message and "tab" not in message
        # the piece after it ("piece", 0) is not taken for an example of its own
        data = load_file(sst2, text, ["sentence"], "label", name=name, skip_bad_rows=True)
        assert data.text_a == ["good one", "ok"] and data.n_skipped_rows == 1


def test_line_endings_of_every_kind_still_read():
    sst2 = get_task("sst2")
    for ending in ("\n", "\r\n", "\r"):
        text = ending.join(["sentence,label", "good one,1", "bad one,0", ""]).encode()
        data = load_file(sst2, text, ["sentence"], "label", name="r.csv")
        assert data.text_a == ["good one", "bad one"] and list(data.labels) == [1, 0]


def test_a_well_quoted_text_over_several_lines_is_still_one_example():
    data = load_file(get_task("sst2"), b'sentence,label\n"two\nlines, one ""quote""",1\nok,0\n', ["sentence"], "label",
                     name="r.csv")
    assert data.text_a == ['two\nlines, one "quote"', "ok"] and data.n_skipped_rows == 0
