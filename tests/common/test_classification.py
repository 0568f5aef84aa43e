"""metrics.json's per-class scores: a confusion matrix and precision / recall / F1 per class."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from common import classification


def test_per_class_scores_equal_scikit_learns_with_zero_division_0():
    rng = np.random.default_rng(0)
    targets = rng.integers(0, 4, 200)
    logits = rng.normal(size=(200, 4)) + 2.0 * np.eye(4)[targets] * (rng.random(200) < 0.6)[:, None]
    logits[:, 3] -= 10.0  # class 3 is never predicted: precision 0, as zero_division=0 says
    report = classification.report(logits, targets, np.ones(200), ["a", "b", "c", "d"])
    predicted = logits.argmax(-1)
    assert report["confusion_matrix"] == confusion_matrix(targets, predicted, labels=range(4)).tolist()
    precision, recall, f1, support = precision_recall_fscore_support(targets, predicted, labels=range(4), zero_division=0)
    for i, name in enumerate("abcd"):
        scores = report["per_class"][name]
        np.testing.assert_allclose([scores["precision"], scores["recall"], scores["f1"], scores["support"]], [precision[i], recall[i], f1[i], support[i]])
    assert report["macro_f1"] == np.float64(f1.mean())


def test_padding_examples_of_weight_0_are_not_counted():
    report = classification.report(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), np.array([0, 1, 1]), np.array([1.0, 1.0, 0.0]))
    assert report["confusion_matrix"] == [[1, 0], [0, 1]]
    assert report["labels"] == ["0", "1"]
