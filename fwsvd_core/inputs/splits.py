"""Cutting one labelled file into a Fisher (train) part and a scored (dev) part."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
from sklearn.model_selection import train_test_split

from fwsvd_core.errors import DataError
from fwsvd_core.inputs.data import TaskData

DEV_SHARE = 0.2
SPLIT_SEED = 0


def train_dev_split(data: TaskData, dev_share: float = DEV_SHARE, seed: int = SPLIT_SEED) -> tuple[TaskData, TaskData, str]:
    """(train, dev, how it was split): a seeded shuffle, stratified by label for classification so that a file
    sorted by label still gives every class to both parts (unstratified when a class has too few examples)."""
    if len(data) < 2:
        raise DataError("The file needs at least 2 rows to give a Fisher part and a scored part.")
    indices = np.arange(len(data))
    share = f"{round(100 * (1 - dev_share))}/{round(100 * dev_share)}"
    how = f"shuffled (seed {seed}) and split {share} into train/dev"
    stratify = None if data.task.is_regression else data.labels
    try:
        train_idx, dev_idx = train_test_split(indices, test_size=dev_share, random_state=seed, stratify=stratify)
        if stratify is not None:
            how += ", stratified by label (each class in the same share in both parts)"
    except ValueError:  # a class with a single example, or fewer dev rows than classes: no stratified split exists
        train_idx, dev_idx = train_test_split(indices, test_size=dev_share, random_state=seed)
        how += ", not stratified (a class has too few examples for that)"
    # the rows keep their file order within each part
    train, dev = data.subset(np.sort(train_idx)), data.subset(np.sort(dev_idx))
    return replace(train, split="train"), replace(dev, split="dev"), how
