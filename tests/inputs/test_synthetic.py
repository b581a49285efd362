"""The generated tasks: reproducible, labelled as generated, and hard enough to teach compression with."""
import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

from fwsvd_core.inputs.synthetic import AMBIGUOUS, is_synthetic, synthetic_task_data


def test_the_generated_data_is_reproducible_labelled_and_balanced():
    first, again = synthetic_task_data("sst2", "train", 500), synthetic_task_data("sst2", "train", 500)
    assert first.text_a == again.text_a and np.array_equal(first.labels, again.labels)
    assert synthetic_task_data("sst2", "dev", 500).text_a != first.text_a
    assert is_synthetic(first.source) and 0.45 < first.labels.mean() < 0.55
    stsb = synthetic_task_data("stsb", "dev", 500)
    assert stsb.text_b is not None and stsb.labels.min() >= 0 and stsb.labels.max() <= 5


def test_the_sentiment_task_needs_word_order_and_caps_every_model_below_perfect():
    train, dev = synthetic_task_data("sst2", "train", 4000), synthetic_task_data("sst2", "dev", 2000)

    def bag_of_words(ngrams: tuple[int, int]) -> float:
        words = CountVectorizer(ngram_range=ngrams).fit(train.text_a)
        model = LogisticRegression(max_iter=2000).fit(words.transform(train.text_a), train.labels)
        return float(np.mean(model.predict(words.transform(dev.text_a)) == dev.labels))

    # single words say little (the other polarity's words appear in most sentences); pairs of words say much more
    assert bag_of_words((1, 1)) < 0.72 < bag_of_words((1, 2))
    # a share of labels is drawn at random, as ambiguous real reviews are: no model can be right on all of them
    assert bag_of_words((1, 2)) < 1 - AMBIGUOUS / 2 + 0.02
