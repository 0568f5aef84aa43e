"""How good and how faithful sentence embeddings are, in numpy (training, export and the
on-device runtime score them alike):

- `knn_accuracy`: leave-one-out k-nearest-neighbour (cosine) classification accuracy of labelled
  examples: classes that embeddings separate score high, with no classifier trained on them.
- `cosine_rows`: per-row cosine of two sets of embeddings of the same inputs (a quantized or
  converted model against the Keras one).
"""

from __future__ import annotations

import numpy as np

KNN_K = 10


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """cos(a[i], b[i]) for every row i."""
    return np.sum(unit(a) * unit(b), axis=-1)


def knn_accuracy(embeddings: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None, k: int = KNN_K) -> float:
    """Share of (weighted) examples whose `k` most cosine-similar other examples vote for their
    label (votes weighted by similarity; an example never votes for itself)."""
    e, labels = unit(embeddings), np.asarray(labels, np.int64)
    weights = np.ones(len(labels)) if weights is None else np.asarray(weights, np.float64)
    kept = weights > 0
    e, labels, weights = e[kept], labels[kept], weights[kept]
    if len(labels) < 2:
        return 0.0
    k = min(k, len(labels) - 1)
    correct = 0.0
    for start in range(0, len(labels), 1024):  # (block, n) similarities at a time
        similarity = e[start : start + 1024] @ e.T
        rows = np.arange(similarity.shape[0])
        similarity[rows, start + rows] = -np.inf
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        votes = np.zeros((len(rows), labels.max() + 1))
        np.add.at(votes, (np.repeat(rows, k), labels[nearest].ravel()), np.take_along_axis(similarity, nearest, 1).ravel() + 1.0)
        correct += float(np.sum(weights[start : start + 1024] * (votes.argmax(1) == labels[start : start + 1024])))
    return correct / float(weights.sum())


def metrics(embeddings: np.ndarray, targets: np.ndarray, target_weights: np.ndarray) -> dict[str, float]:
    """An embedding model's validation metrics (its `targets` are the examples' class labels)."""
    norms = np.linalg.norm(np.asarray(embeddings, np.float64), axis=-1)
    return {"knn_accuracy": knn_accuracy(embeddings, targets, target_weights), "mean_norm": float(norms.mean())}


def evaluate(outputs: np.ndarray, examples: dict[str, np.ndarray]) -> dict[str, float]:
    """`metrics` of a model's embeddings `outputs` for a run's stored `examples` (their labels)."""
    from common.rundir import TARGET_WEIGHTS, TARGETS

    return metrics(outputs, examples[TARGETS], examples[TARGET_WEIGHTS])
