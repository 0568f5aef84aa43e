"""A classifier's per-class scores from its outputs, in numpy: the confusion matrix and each
class's precision, recall, F1 and support (scikit-learn's definitions, weighted by target_weights)."""

from __future__ import annotations

from typing import Sequence

import numpy as np


def report(logits: np.ndarray, targets: np.ndarray, target_weights: np.ndarray, label_names: Sequence[str] | None = None) -> dict:
    """{"confusion_matrix": rows = true class, columns = predicted; "per_class": {name: {precision,
    recall, f1, support}}; "macro_f1"}. A class never predicted has precision 0 (as scikit-learn's
    zero_division=0), one never present recall 0."""
    logits = np.asarray(logits)
    classes = logits.shape[-1]
    names = list(label_names) if label_names and len(label_names) == classes else [str(i) for i in range(classes)]
    predicted = np.argmax(logits, -1).ravel()
    targets, weights = np.asarray(targets).ravel().astype(np.int64), np.asarray(target_weights, np.float64).ravel()
    matrix = np.zeros((classes, classes))
    np.add.at(matrix, (targets, predicted), weights)
    true_positive = np.diag(matrix)
    precision = np.divide(true_positive, matrix.sum(0), out=np.zeros(classes), where=matrix.sum(0) > 0)
    recall = np.divide(true_positive, matrix.sum(1), out=np.zeros(classes), where=matrix.sum(1) > 0)
    f1 = np.divide(2 * precision * recall, precision + recall, out=np.zeros(classes), where=precision + recall > 0)
    per_class = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": float(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, matrix.sum(1))
    }
    as_int = matrix.astype(np.int64) if np.all(matrix == np.round(matrix)) else matrix
    return {"confusion_matrix": as_int.tolist(), "labels": names, "per_class": per_class, "macro_f1": float(f1.mean())}
