"""An uploaded file is cut into train and dev by a seeded, stratified shuffle, not in file order."""
import numpy as np
import pytest

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.data import load_file
from fwsvd_core.inputs.splits import train_dev_split
from fwsvd_core.inputs.tasks import get_task


def table(labels) -> bytes:
    return b"t,y\n" + b"".join(f"sentence {i},{y}\n".encode() for i, y in enumerate(labels))


def test_a_file_sorted_by_label_gives_every_class_to_both_parts_in_proportion():
    data = load_file(get_task("sst2"), table([0] * 30 + [1] * 10), ("t",), "y", name="sorted.csv")
    train, dev, how = train_dev_split(data)
    assert (len(train), len(dev)) == (32, 8)
    assert sorted(np.bincount(dev.labels).tolist()) == [2, 6] and sorted(np.bincount(train.labels).tolist()) == [8, 24]
    assert set(train.text_a).isdisjoint(dev.text_a) and len(set(train.text_a) | set(dev.text_a)) == 40
    assert (train.split, dev.split) == ("train", "dev")
    assert "seed 0" in how and "80/20" in how and "stratified" in how and "not stratified" not in how
    again = train_dev_split(data)
    assert again[1].text_a == dev.text_a  # seeded: the same parts every time


def test_a_class_with_one_example_falls_back_to_a_plain_shuffle_and_says_so():
    data = load_file(get_task("sst2"), table([0] * 19 + [1]), ("t",), "y", name="rare.csv")
    train, dev, how = train_dev_split(data)
    assert (len(train), len(dev)) == (16, 4) and "not stratified" in how
    assert dev.text_a != [f"sentence {i}" for i in range(16, 20)]  # not the file's last rows


def test_regression_is_shuffled_without_strata_and_one_row_is_refused():
    scores = [i / 10 for i in range(20)]
    data = load_file(get_task("stsb"), b"a,b,s\n" + b"".join(f"x{i},y{i},{s}\n".encode() for i, s in enumerate(scores)),
                     ("a", "b"), "s", name="pairs.csv")
    _, dev, how = train_dev_split(data)
    assert len(dev) == 4 and "stratified" not in how and max(dev.labels) - min(dev.labels) > 0.5
    with pytest.raises(DataError, match="at least 2 rows"):
        train_dev_split(data.subset([0]))
