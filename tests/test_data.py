import json

import numpy as np
import pytest

from fwsvd_core.data import load_file, load_glue_folder, load_hub, load_task_data
from fwsvd_core.errors import DataError
from fwsvd_core.tasks import get_task


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
