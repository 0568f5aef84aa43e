"""Task metrics and output parity for any predictor: Keras, SavedModel, TFLite or ONNX.

A predictor is a function from a dict of named numpy inputs to numpy logits. Metrics are those of
metrics.json (masked-token accuracy for MLM, next-token accuracy and perplexity for GPT),
computed on the examples the trainer stored in the run.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np

from trainers.rundir import TARGET_WEIGHTS, TARGETS

Predictor = Callable[[dict[str, np.ndarray]], np.ndarray]


def evaluate(
    input_names: Sequence[str], predict: Predictor, examples: dict[str, np.ndarray], perplexity: bool, batch_size: int = 64
) -> dict[str, float]:
    """Loss, accuracy (and perplexity) of `predict` over stored `examples`, as the trainer defines
    them: weighted over `targets` by `target_weights`."""
    n = len(examples[TARGETS])
    loss = weight = correct = 0.0
    for start in range(0, n, batch_size):
        batch = {k: v[start : start + batch_size] for k, v in examples.items()}
        logits = np.asarray(predict({name: batch[name] for name in input_names}), np.float64)
        targets, weights = batch[TARGETS].astype(np.int64), batch[TARGET_WEIGHTS].astype(np.float64)
        shifted = logits - logits.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
        ce = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
        loss += float((ce * weights).sum())
        weight += float(weights.sum())
        correct += float(((logits.argmax(-1) == targets) * weights).sum())
    if weight <= 0:
        raise ValueError("no scored examples (every target weight is 0); nothing to evaluate")
    metrics = {"loss": loss / weight, "accuracy": correct / weight}
    if perplexity:
        metrics["perplexity"] = math.exp(min(metrics["loss"], 50.0))
    return metrics


def predict_in_batches(predict: Predictor, inputs: dict[str, np.ndarray], batch_size: int = 64) -> np.ndarray:
    n = len(next(iter(inputs.values())))
    outputs = [predict({k: v[i : i + batch_size] for k, v in inputs.items()}) for i in range(0, n, batch_size)]
    return np.concatenate(outputs)


def max_abs_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))
