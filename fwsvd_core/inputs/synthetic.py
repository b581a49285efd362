"""Synthetic tasks the project generates itself, so a machine with no internet and no data still has one.

Every TaskData made here says "synthetic" in its source.
"""
from __future__ import annotations

import numpy as np

from fwsvd_core.inputs.data import TaskData
from fwsvd_core.inputs.tasks import get_task

SYNTHETIC_TAG = "synthetic"
SYNTHETIC_VERSION = 2  # 2: harder forms and ambiguous labels (version 1 was solved perfectly, nothing to teach)

_SUBJECTS = ["the film", "this movie", "the acting", "the script", "the story", "the soundtrack", "the ending",
             "the cast", "the dialogue", "the direction", "the plot", "the photography"]
_ASIDES = ["the popcorn", "the seats", "the trailer", "the weather", "the parking", "the ticket price", "the queue"]
_POSITIVE = ["good", "great", "wonderful", "charming", "brilliant", "moving", "delightful", "funny", "gripping",
             "beautiful", "clever", "warm", "fresh", "powerful"]
_NEGATIVE = ["bad", "dull", "boring", "awful", "clumsy", "tedious", "lifeless", "predictable", "messy", "painful",
             "silly", "flat", "stale", "weak"]
_ADVERBS = ["quite", "very", "rather", "truly", "surprisingly", "oddly", "deeply", "mostly"]
# Real review sentences are sometimes ambiguous and their labels sometimes wrong (SST-2's best models stay below
# 0.97); this share of generated labels is drawn at random, so no model can score above about 1 - AMBIGUOUS / 2.
AMBIGUOUS = 0.18


def _sentiment_sentence(rng: np.random.Generator, label: int) -> str:
    """A sentence whose sentiment is `label`, in one of several forms; the harder ones need the whole sentence:
    negation, a contrast that hands the verdict to one clause, double negation, a count of three adjectives,
    and an aside about something other than the film that carries the other polarity."""
    words = _POSITIVE if label else _NEGATIVE
    other = _NEGATIVE if label else _POSITIVE
    subj, subj2 = rng.choice(_SUBJECTS, 2, replace=False)
    adj, adv, contrast, aside = rng.choice(words), rng.choice(_ADVERBS), rng.choice(other), rng.choice(_ASIDES)
    form = int(rng.integers(10))
    if form == 0:
        return f"{subj} is {adv} {adj} ."
    if form == 1:  # a negated word of the other polarity carries this label
        return f"{subj} is not {contrast} at all ."
    if form == 2:  # the clause after "but" decides
        return f"{subj} is {contrast} , but {subj2} is {adv} {adj} ."
    if form == 3:  # the clause after "although" loses
        return f"although {subj} is {contrast} , {subj2} feels {adj} ."
    if form == 4:  # negation, then a contrast: both must be read
        return f"{subj} is not {adj} , but it is not {contrast} either , and {subj2} is {adj} ."
    if form == 5:  # double negation
        return f"i would not say that {subj} is not {adj} ."
    if form == 6:  # two adjectives of three decide
        first, second = rng.choice(words, 2, replace=False)
        order = rng.permutation([first, second, contrast])
        return f"{subj} is {order[0]} , {order[1]} and {order[2]} ."
    if form == 7:  # an aside about something else carries the other polarity
        return f"{aside} was {adv} {contrast} , yet {subj} was {adj} ."
    if form == 8:
        return f"{subj} may be {contrast} in places , but overall it is {adj} ."
    return f"never have i seen something so {adj} as {subj} ."


def _sentiment_example(rng: np.random.Generator) -> tuple[str, int]:
    label = int(rng.integers(2))
    text = _sentiment_sentence(rng, label)
    if rng.random() < AMBIGUOUS:
        label = int(rng.integers(2))
    return text, label


_NOUNS = ["man", "woman", "child", "dog", "cat", "chef", "runner", "bird", "girl", "boy", "player", "driver"]
_VERBS = ["is playing", "is cooking", "is running", "is eating", "is sleeping", "is singing", "is reading", "is jumping"]
_PLACES = ["in a park", "on a street", "at home", "near a river", "in a kitchen", "on a beach", "in a field"]


def _similarity_example(rng: np.random.Generator) -> tuple[str, str, float]:
    slots = [rng.choice(_NOUNS), rng.choice(_VERBS), rng.choice(_PLACES)]
    changed = rng.random(3) < rng.uniform(0.0, 1.0)
    pools = [_NOUNS, _VERBS, _PLACES]
    other = [rng.choice([w for w in pool if w != s]) if c else s for s, c, pool in zip(slots, changed, pools, strict=True)]
    score = 5.0 * (1.0 - (2.0 * changed[0] + 2.0 * changed[1] + changed[2]) / 5.0)
    # annotators disagree: real STS-B scores are averages of a few people's judgements
    score = float(np.clip(score + rng.normal(0.0, 0.8), 0.0, 5.0))
    return f"a {slots[0]} {slots[1]} {slots[2]} .", f"the {other[0]} {other[1]} {other[2]} .", score


def synthetic_task_data(task_name: str, split: str, n: int, seed: int = 0) -> TaskData:
    """`n` generated examples of a sentiment task ('sst2') or a sentence-similarity task ('stsb')."""
    task = get_task(task_name)
    rng = np.random.default_rng([seed, 0 if split == "train" else 1])
    source = synthetic_source(task.name)
    if task.name == "sst2":
        pairs = [_sentiment_example(rng) for _ in range(n)]
        return TaskData(task, split, [p[0] for p in pairs], None, np.array([p[1] for p in pairs]), source)
    if task.name == "stsb":
        triples = [_similarity_example(rng) for _ in range(n)]
        return TaskData(task, split, [t[0] for t in triples], [t[1] for t in triples],
                        np.array([t[2] for t in triples], dtype=np.float32), source)
    raise ValueError(f"No synthetic version of task {task.name}; there is one for sst2 and stsb.")


def synthetic_source(task_name: str) -> str:
    """How generated data names its source; it changes with the generator's version."""
    return f"{SYNTHETIC_TAG} {task_name} v{SYNTHETIC_VERSION} (generated by FWSVD Studio, not real data)"


def is_synthetic(source: str) -> bool:
    return source.startswith(SYNTHETIC_TAG)
